//! A minimal HTTP/1.1 server on hyper that hands whole requests to an async function.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use ferrypay::api::ClientAddr;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

/// Request bodies above this are answered 413 without being read further.
const MAX_BODY: usize = 1024 * 1024;

/// Serves `handler` on `listener` until the returned task is aborted.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> JoinHandle<()>
where
    H: Fn(http::Request<Bytes>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<String>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let (parts, body) = req.into_parts();
                        let response = match Limited::new(body, MAX_BODY).collect().await {
                            Ok(collected) => {
                                let mut req =
                                    http::Request::from_parts(parts, collected.to_bytes());
                                ClientAddr::attach(&mut req, peer.ip());
                                handler(req, peer).await
                            }
                            Err(_) => too_large(),
                        };
                        Ok::<_, Infallible>(response.map(|b| Full::new(Bytes::from(b))))
                    }
                });
                if let Err(err) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
            });
        }
    })
}

fn too_large() -> http::Response<String> {
    ferrypay::api::error_response(&ferrypay::api::ApiError::BodyTooLarge)
}
