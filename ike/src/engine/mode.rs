//! USE_TRANSPORT_MODE (RFC 7296 §1.3.1): the initiator of a child SA asks for transport
//! mode with the notify; the responder grants it by including the notify in its
//! answer, or declines by leaving it out, which makes the SA a tunnel-mode SA. An
//! initiator that cannot accept the mode it got "MUST delete the SA"
//! ([`super::IkeSa::refuse_child`]).

use super::config::IpsecMode;
use super::sa::notify_of;
use crate::wire::{NotifyPayload, NotifyType, Payload};

/// The notify asking for (initiator) or granting (responder) `mode`: none for tunnel
/// mode, which is what an SA is without it.
pub(super) fn notify(mode: IpsecMode) -> Option<Payload> {
    (mode == IpsecMode::Transport)
        .then(|| Payload::Notify(NotifyPayload::new(NotifyType::UseTransportMode, vec![])))
}

/// The mode a message asks for (in a request) or grants (in a response).
pub(super) fn of(payloads: &[Payload]) -> IpsecMode {
    match notify_of(payloads, NotifyType::UseTransportMode) {
        Some(_) => IpsecMode::Transport,
        None => IpsecMode::Tunnel,
    }
}

/// Responder: the mode of the SA, transport only if the initiator asked for it and
/// `allowed` (our configuration, or the mode of the SA being rekeyed) permits it.
pub(super) fn answer(request: &[Payload], allowed: IpsecMode) -> IpsecMode {
    match (of(request), allowed) {
        (IpsecMode::Transport, IpsecMode::Transport) => IpsecMode::Transport,
        _ => IpsecMode::Tunnel,
    }
}
