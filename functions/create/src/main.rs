//! Lambda `create`: the merchant API's `create` endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`.

use ferrypay::{
    api::{self, Endpoint},
    channel::PayChannel,
    service::Ferrypay,
    store::Store,
};
use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let app = ferrypay::runtime::lambda_app_from_env()?;
    run(service_fn(|req| handler(&app, req))).await
}

async fn handler<S: Store, C: PayChannel>(
    app: &Ferrypay<S, C>,
    req: Request,
) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let body = bytes::Bytes::copy_from_slice(body.as_ref());
    let response = api::handle_endpoint(
        app,
        Endpoint::Create,
        lambda_http::http::Request::from_parts(parts, body),
    )
    .await;
    Ok(response.map(Body::from))
}
