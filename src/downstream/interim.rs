//! Interim (1xx) responses on their way to an HTTP/1.1 client while its request is
//! still being served: a backend's `103 Early Hints` (or `102 Processing`) reaches
//! the client before the final response, as RFC 9110 §15.2 asks of a proxy. The
//! connection keeps one end and the request carries the other (as an extension);
//! the upstream side puts each interim head in, and the connection writes it out.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http::response::Parts;

/// Either end of one request's interim responses.
#[derive(Clone, Default)]
pub struct Interim(Arc<Mutex<Slot>>);

/// What is shared between the ends.
#[derive(Default)]
struct Slot {
    /// Heads received and not yet written, in order.
    heads: Vec<Parts>,
    /// The connection's task, waiting for one.
    waker: Option<Waker>,
}

impl std::fmt::Debug for Interim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interim")
    }
}

impl Interim {
    /// Queues an interim head for the client (its hop-by-hop fields already removed).
    pub fn send(&self, head: Parts) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.heads.push(head);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    /// Every head still queued (the final answer came in the same read as they did).
    pub fn drain(&self) -> Vec<Parts> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()).heads)
    }

    /// The next queued head, oldest first.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Parts> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.heads.is_empty() {
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(slot.heads.remove(0))
    }
}
