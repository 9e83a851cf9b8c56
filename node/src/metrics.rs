//! Prometheus metrics (`[services.metrics] listen`): the counters `show security ...`
//! and `show chassis cluster status` report, in the text exposition format, over plain
//! HTTP (`GET /metrics`). Bind it to loopback or a management network: it is read-only
//! and carries no secrets, but it is not authenticated.
//!
//! Every scrape reads the backend afresh (the same calls the management API makes), so
//! nothing is cached and nothing can go stale; counters are the dataplane's own, which
//! only grow while an SA lives (an SA's series ends with the SA, as Prometheus expects of
//! a label set that goes away).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dataplane::drop::DropReason;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::mgmt::backend::{Backend, BackendError, IkeSaState, NOT_CLUSTERED, RedundancyState};

/// Why a scrape could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The node did not answer.
    #[error("reading the node: {0}")]
    Backend(#[from] BackendError),
    /// A metric definition was refused (a bug: names are fixed).
    #[error("metric definition: {0}")]
    Definition(#[from] prometheus::Error),
}

fn counters(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauges(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// One scrape: the node's state in the text exposition format.
pub async fn render(backend: &dyn Backend) -> Result<String, MetricsError> {
    let r = Registry::new();
    let ike = gauges(&r, "vpnd_ike_sas", "IKE SAs by state", &["state"])?;
    for s in [
        IkeSaState::Established,
        IkeSaState::Connecting,
        IkeSaState::Down,
    ] {
        ike.with_label_values(&[ike_state(s)]).set(0);
    }
    for sa in backend.list_ike_sas(None).await? {
        ike.with_label_values(&[ike_state(sa.state)]).inc();
    }

    let sa_labels = ["vpn", "gateway", "inbound_spi", "outbound_spi", "direction"];
    let packets = counters(
        &r,
        "vpnd_ipsec_sa_packets_total",
        "Packets through an IPsec SA pair",
        &sa_labels,
    )?;
    let bytes = counters(
        &r,
        "vpnd_ipsec_sa_bytes_total",
        "Bytes through an IPsec SA pair",
        &sa_labels,
    )?;
    let sa_drops = counters(
        &r,
        "vpnd_ipsec_sa_drops_total",
        "Packets an IPsec SA pair dropped, by reason",
        &["vpn", "inbound_spi", "reason"],
    )?;
    let pairs = backend.list_ipsec_sas(None, None).await?;
    gauges(&r, "vpnd_ipsec_sas", "IPsec SA pairs installed", &[])?
        .with_label_values(&[])
        .set(i64::try_from(pairs.len()).unwrap_or(i64::MAX));
    for sa in &pairs {
        let (inb, outb) = (
            format!("{:08x}", sa.inbound_spi),
            format!("{:08x}", sa.outbound_spi),
        );
        let gateway = sa.gateway.as_deref().unwrap_or("");
        for (direction, p, b) in [
            ("in", sa.packets_in, sa.bytes_in),
            ("out", sa.packets_out, sa.bytes_out),
        ] {
            let labels = [sa.vpn.as_str(), gateway, &inb, &outb, direction];
            packets.with_label_values(&labels).inc_by(p);
            bytes.with_label_values(&labels).inc_by(b);
        }
        for (reason, n) in &sa.drops {
            sa_drops
                .with_label_values(&[sa.vpn.as_str(), &inb, reason])
                .inc_by(*n);
        }
    }

    let stats = backend.statistics().await?;
    // Every drop reason is a series, zeros included: a series that appears only with
    // the first drop breaks rate() and alerts written against it.
    let mut drops: BTreeMap<String, u64> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_owned(), 0))
        .collect();
    drops.extend(stats.total_drops());
    for (name, help, label, totals) in [
        (
            "vpnd_drops_total",
            "Packets dropped by the dataplane, by reason",
            "reason",
            drops,
        ),
        (
            "vpnd_io_total",
            "Dataplane I/O counters, by name",
            "counter",
            stats.total_io(),
        ),
    ] {
        let c = counters(&r, name, help, &[label])?;
        for (key, n) in totals {
            c.with_label_values(&[&key]).inc_by(n);
        }
    }
    let spu_sas = gauges(
        &r,
        "vpnd_spu_sas",
        "SAs (one per direction) installed per SPU",
        &["spu"],
    )?;
    for s in &stats.spus {
        spu_sas
            .with_label_values(&[&s.spu.to_string()])
            .set(i64::from(s.active_sas));
    }

    match backend.cluster_status().await {
        Ok(status) => {
            let primary = gauges(
                &r,
                "vpnd_chassis_cluster_primary",
                "1 if this node is primary of the redundancy group",
                &["redundancy_group", "node"],
            )?;
            let failovers = counters(
                &r,
                "vpnd_chassis_cluster_failovers_total",
                "Failovers of the redundancy group",
                &["redundancy_group"],
            )?;
            for g in &status.redundancy_groups {
                let group = g.redundancy_group.to_string();
                let me = g.nodes.iter().find(|n| n.node == status.local_member);
                let is_primary = me.is_some_and(|n| n.status == RedundancyState::Primary);
                primary
                    .with_label_values(&[&group, &status.local_member.to_string()])
                    .set(i64::from(is_primary));
                failovers
                    .with_label_values(&[&group])
                    .inc_by(g.failover_count);
            }
        }
        // A standalone node has no cluster series.
        Err(BackendError::FailedPrecondition(m)) if m == NOT_CLUSTERED => {}
        Err(e) => return Err(e.into()),
    }

    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn ike_state(s: IkeSaState) -> &'static str {
    match s {
        IkeSaState::Established => "established",
        IkeSaState::Connecting => "connecting",
        IkeSaState::Down => "down",
    }
}

async fn answer(
    req: Request<Incoming>,
    backend: Arc<dyn Backend>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        Ok(r)
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only GET /metrics is served\n".into(),
        );
    }
    match render(backend.as_ref()).await {
        Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            )
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, backend.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}
