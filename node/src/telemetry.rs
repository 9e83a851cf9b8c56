//! Where `vpnd`'s logs and spans go: standard error always, and an OpenTelemetry
//! collector over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and not empty).
//!
//! Without the variable nothing is built and nothing is sent. With it, spans (one per
//! IKE message a gateway handles, one per child SA's life, see `runtime::gateway` and
//! `runtime::child_sa`) go out in batches from the SDK's own thread; a collector that is
//! down costs an error line per failed batch, never a stalled gateway. The exporter's
//! gRPC channel lives on a one-thread tokio runtime of its own, because the daemon's
//! runtime does not exist yet when logging starts and must not be the one to drain the
//! last batch at exit.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The standard variable naming the collector (`http://host:4317`).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable overriding the service name (default `vpnd`).
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The `--log` filter does not parse.
    #[error("bad --log filter {filter:?}: {source}")]
    Filter {
        /// The filter given.
        filter: String,
        /// Why.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The exporter's runtime could not start.
    #[error("OpenTelemetry exporter runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("{OTLP_ENDPOINT}={endpoint}: {source}")]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes the last spans.
#[derive(Debug)]
pub struct Telemetry {
    export: Option<(SdkTracerProvider, tokio::runtime::Runtime)>,
}

impl Telemetry {
    /// Installs the global subscriber: `filter` (RUST_LOG syntax) for both the log
    /// lines and the exported spans; `instance` (the cluster member or host) becomes
    /// the spans' `service.instance.id`.
    pub fn init(filter: &str, instance: Option<&str>) -> Result<Telemetry, TelemetryError> {
        let env_filter = EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter {
            filter: filter.to_owned(),
            source,
        })?;
        let endpoint = std::env::var(OTLP_ENDPOINT)
            .ok()
            .filter(|e| !e.trim().is_empty());
        let export = endpoint
            .as_deref()
            .map(|e| exporter(e, instance))
            .transpose()?;
        let layer = export
            .as_ref()
            .map(|(p, _)| tracing_opentelemetry::layer().with_tracer(p.tracer("vpnd")));
        tracing_subscriber::registry()
            .with(env_filter)
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .with(layer)
            .init();
        if let Some(e) = endpoint {
            tracing::info!(endpoint = %e, "exporting spans to an OpenTelemetry collector (OTLP/gRPC)");
        }
        Ok(Telemetry { export })
    }

    /// Sends the spans still queued (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some((provider, runtime)) = self.export {
            if let Err(e) = provider.shutdown() {
                eprintln!("vpnd: flushing OpenTelemetry spans: {e}");
            }
            runtime.shutdown_background();
        }
    }
}

fn exporter(
    endpoint: &str,
    instance: Option<&str>,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), TelemetryError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp")
        .enable_all()
        .build()
        .map_err(TelemetryError::Runtime)?;
    let _on_runtime = runtime.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let service = std::env::var(SERVICE_NAME).unwrap_or_else(|_| "vpnd".to_owned());
    let mut resource = Resource::builder().with_service_name(service);
    if let Some(i) = instance {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            i.to_owned(),
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok((provider, runtime))
}
