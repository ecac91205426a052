//! The path of one request, as a list of phases: check the head → route → check the
//! body limit → rewrite the head → keep the body for a retry → the attempt loop
//! (pick, exchange, maybe again) → the response streams back and the session ends.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request};
use hyper::body::Body;
use tracing::{debug, error, warn};

use super::response_body::{ProxyBody, Reply};
use super::retry::{self, Plan, Resend};
use super::session::Session;
use super::state::State;
use super::tunnel;
use crate::downstream::interim::Interim;
use crate::downstream::request_body::Inbound;
use crate::http::fields::Present;
use crate::http::{checks, host, rewrite, ProxyError, Side};
use crate::stats::Protocol;

/// The service entry point of both connection layers: every error becomes a response.
/// `last` marks the last request the connection may carry (`max_requests_per_connection`);
/// `forwarded_for` is the client's address as `X-Forwarded-For` appends it (made once per
/// connection); `interim` is where a backend's 1xx responses go, when the client can take them;
/// `protocol` is the connection's, for the log and the metrics.
pub async fn handle(
    state: Arc<State>,
    client: SocketAddr,
    forwarded_for: HeaderValue,
    req: Box<Request<Inbound>>,
    last: bool,
    interim: Option<Interim>,
    protocol: Protocol,
) -> Reply {
    let mut session = Box::new(Session::new(client, &req, state.clone(), protocol));
    // A body we did not read would be parsed as the next request if the connection
    // stayed open, so an early answer closes it.
    let unread_body = !req.body().is_end_stream();
    let mut resp = match proxy(&state, req, &mut session, interim, forwarded_for).await {
        Ok(resp) => resp,
        Err(err) => {
            match err.side() {
                Side::Backend => warn!(%client, "{err}"),
                Side::Relevo => error!(%client, "{err}"),
                Side::Client => debug!(%client, "refused: {err}"),
            }
            Box::new(err.to_response(unread_body).map(ProxyBody::page))
        }
    };
    if last {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    session.status = resp.status();
    resp.body_mut().set_session(session);
    resp
}

async fn proxy(
    state: &State,
    mut req: Box<Request<Inbound>>,
    session: &mut Session,
    interim: Option<Interim>,
    forwarded_for: HeaderValue,
) -> Result<Reply, ProxyError> {
    let present = Present::of(req.headers());
    checks::before_routing(&req, state.config.limits.max_uri_bytes, present)?;
    if req.method() == Method::CONNECT {
        return tunnel::connect(state, *req).await;
    }
    // Route: which host entry is this for?
    let target = host::target(&req)?;
    let entry = match state.hosts.route(&target) {
        Ok(entry) => entry.clone(),
        Err(e) => {
            session.requested_host = Some(target.authority_str().to_owned());
            return Err(e);
        }
    };
    session.entry = Some(entry.clone());
    if let Some(answer) = checks::max_forwards(&mut req) {
        return Ok(Box::new(answer.map(ProxyBody::page)));
    }
    let limit = entry.max_body_bytes;
    let declared = present
        .has(Present::CONTENT_LENGTH)
        .then(|| checks::declared_length(&req))
        .flatten();
    checks::body_within(limit, declared)?;
    let affinity = entry
        .balancer
        .affinity(session.client.ip(), req.headers(), req.uri().path());
    let idempotent = req.method().is_idempotent();
    // RFC 9110 §7.8: an upgrade the client asks for goes to the backend; the client
    // connection relays the tunnel once the backend's 101 is written.
    let upgrade = present
        .has(Present::CONNECTION)
        .then(|| rewrite::upgrade_protocol(&req))
        .flatten();
    let wants_upgrade = upgrade.is_some();

    // Rewrite the head once; keep the body where a retry can find it again.
    // Only an empty body or a small one with a declared length is read ahead; a chunked
    // body of unknown size streams, so memory stays bounded whatever its size.
    let replayable = entry.tries > 1
        && (req.body().is_end_stream()
            || declared.is_some_and(|len| len <= state.config.retries.replay_body_bytes));
    let appended = rewrite::request(&mut req, &target, forwarded_for, upgrade, present);
    let mut resend = Resend::new(
        req,
        appended,
        replayable,
        limit,
        state.timeouts().client_body,
        &entry.traffic.bytes_in,
    )
    .await?;
    let plan = Plan {
        entry: &entry,
        affinity,
        idempotent,
        wants_upgrade,
        interim,
    };
    retry::run(state, plan, &mut resend, session).await
}
