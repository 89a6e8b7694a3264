//! The web app's files, compiled into the binary: `GET /` is the app's page
//! and `GET /assets/<file>` its scripts, styles and the vendored uPlot.
//!
//! The app is plain ES modules with no build step, so what is in
//! `runtime/assets/` is exactly what the browser runs. These routes are
//! open: the files hold no data, and the app signs in before it asks the
//! API for anything.

use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};
use warp::Filter;

/// One embedded file: its name under `/assets/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $ty:literal) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_str!(concat!("../../assets/", $name)),
        }
    };
}

/// Every file the app needs.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("builder.js", "text/javascript; charset=utf-8"),
    asset!("panels.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("pages.js", "text/javascript; charset=utf-8"),
    asset!("util.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// The app's page.
const INDEX: &str = include_str!("../../assets/index.html");

/// GET / and GET /assets/{file}.
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let index = warp::path::end().and(warp::get()).map(index);
    let asset = warp::path("assets")
        .and(warp::path::tail())
        .and(warp::get())
        .map(|tail: warp::path::Tail| file(tail.as_str()));
    index.or(asset).unify()
}

fn index() -> Response {
    let mut response =
        reply::with_header(INDEX, "content-type", "text/html; charset=utf-8").into_response();
    let headers = response.headers_mut();
    // The app talks only to this server and loads only its own files.
    headers.insert(
        "content-security-policy",
        warp::http::HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-store"),
    );
    response
}

fn file(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => {
            let mut response =
                reply::with_header(a.body, "content-type", a.content_type).into_response();
            response.headers_mut().insert(
                "x-content-type-options",
                warp::http::HeaderValue::from_static("nosniff"),
            );
            response
        }
        None => super::replies::denied(&super::auth::Denied::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the app has no file {name:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_there_and_the_page_names_the_entry_module() {
        assert!(INDEX.contains("/assets/app.js"));
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
    }
}
