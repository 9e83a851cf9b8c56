//! One negotiated SA pair: installed on its anchor SPU when the actor starts, removed
//! when it stops, so an SA can never outlive the actor that stands for it.

use std::time::SystemTime;

use actix::prelude::*;
use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::sa::{SaConfig, SaKey};
use dataplane::selector::Selector;

use super::spu::Spus;

/// Ends the pair: its SAs are removed from the dataplane.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Close;

/// Statistics of the pair for `show` commands.
#[derive(Message, Debug)]
#[rtype(result = "ChildSaInfo")]
pub struct Describe;

/// What `show security ipsec security-associations` prints about a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    /// Inbound SA.
    pub inbound: SaKey,
    /// Outbound SA.
    pub outbound: SaKey,
    /// Anchor SPU.
    pub anchor: usize,
    /// Whether the pair is installed.
    pub installed: bool,
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity.
    pub integ: IntegAlg,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Traffic selectors (our side as source).
    pub selectors: Vec<Selector>,
    /// When the pair was negotiated.
    pub created: SystemTime,
}

/// Actor of one child SA pair.
pub struct ChildSa {
    spus: Spus,
    anchor: usize,
    inbound: Option<SaConfig>,
    outbound: Option<SaConfig>,
    keys: (SaKey, SaKey),
    installed: bool,
    /// Told when the pair is in the dataplane; dropped unsent if installing fails.
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    /// What `show` prints; no keys.
    summary: (EncrAlg, IntegAlg, bool, Vec<Selector>),
    created: SystemTime,
    /// Lives as long as the pair: an exported trace shows each SA's lifetime, under the
    /// IKE message that negotiated it.
    span: tracing::Span,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("anchor", &self.anchor)
            .field("keys", &self.keys)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl ChildSa {
    /// A pair to install on `anchor`; `ready` hears when it is installed.
    pub fn new(
        spus: Spus,
        anchor: usize,
        inbound: SaConfig,
        outbound: SaConfig,
        ready: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        let keys = (inbound.key(), outbound.key());
        let summary = (
            outbound.encr,
            outbound.integ,
            outbound.esn,
            outbound.selectors.clone(),
        );
        Self {
            spus,
            anchor,
            inbound: Some(inbound),
            outbound: Some(outbound),
            keys,
            installed: false,
            ready: Some(ready),
            summary,
            created: SystemTime::now(),
            span: tracing::info_span!(
                "child_sa",
                inbound_spi = format_args!("{:#010x}", keys.0.spi).to_string(),
                outbound_spi = format_args!("{:#010x}", keys.1.spi).to_string(),
                anchor
            ),
        }
    }

    /// The inbound SPI, which identifies the pair at the IKE level.
    pub fn inbound_spi(&self) -> u32 {
        self.keys.0.spi
    }
}

impl Actor for ChildSa {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        let (Some(inbound), Some(outbound)) = (self.inbound.take(), self.outbound.take()) else {
            return;
        };
        let spus = self.spus.clone();
        let anchor = self.anchor;
        let fut = async move { spus.install_pair(anchor, inbound, outbound).await };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(()) => {
                act.installed = true;
                if let Some(ready) = act.ready.take() {
                    // The gateway may be gone already; nobody to tell then.
                    let _ = ready.send(());
                }
                tracing::info!(
                    inbound = format_args!("{:#010x}", act.keys.0.spi),
                    outbound = format_args!("{:#010x}", act.keys.1.spi),
                    anchor = act.anchor,
                    "IPsec SA pair installed"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "installing IPsec SA pair failed");
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _in_span = self.span.enter();
        if self.installed {
            self.spus
                .remove(self.anchor, vec![self.keys.1, self.keys.0]);
            tracing::info!(
                inbound = format_args!("{:#010x}", self.keys.0.spi),
                "IPsec SA pair removed"
            );
        }
    }
}

impl Handler<Describe> for ChildSa {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let (encr, integ, esn, selectors) = self.summary.clone();
        MessageResult(ChildSaInfo {
            inbound: self.keys.0,
            outbound: self.keys.1,
            anchor: self.anchor,
            installed: self.installed,
            encr,
            integ,
            esn,
            selectors,
            created: self.created,
        })
    }
}

impl Handler<Close> for ChildSa {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
