//! The dashboard's static files, compiled into the binary from `web/`.

use axum::{
    http::header,
    response::{Html, IntoResponse},
};

pub async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}

pub async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../web/app.js"),
    )
}

pub async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../web/style.css"),
    )
}
