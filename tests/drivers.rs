//! The I/O driver: io_uring by default (where the kernel allows it), monoio's epoll driver
//! with `MONOIO_FORCE_LEGACY_DRIVER=1`; proxying works on both.

mod common;

use common::*;
use serde_json::json;

const FORCE: &str = "MONOIO_FORCE_LEGACY_DRIVER";

fn proxies_normally(gw: &Gateway, up: &Upstream) {
    let mut c = gw.client();
    let r = c.get("/mcp/a/x?y=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /base/x?y=1 0");
    let r = c.post("/mcp/a/p", &[], b"0123456789");
    assert_eq!(r.text(), "POST /base/p 10");
    let r = c.request(
        "POST",
        "/mcp/a/c",
        &[("Transfer-Encoding", "chunked")],
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.text(), "POST /base/c 3");
    assert_eq!(up.last().body, b"abc");
    assert_eq!(gw.client().get("/mcp/nope").status, 404);
}

#[test]
fn forced_legacy_driver_is_epoll_and_proxies() {
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &config(json!([server("a", &up.url("/base"))])),
        &[(FORCE, "1")],
        &[],
    );
    assert!(gw.banner.contains("epoll driver"), "{}", gw.banner);
    let info = gw.mgmt_json("/info");
    assert_eq!(info["runtime"]["driver"], "epoll", "{info}");
    proxies_normally(&gw, &up);
}

#[test]
fn default_driver_is_io_uring() {
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &config(json!([server("a", &up.url("/base"))])),
        &[],
        &[FORCE],
    );
    let info = gw.mgmt_json("/info");
    println!("banner: {}", gw.banner);
    assert_eq!(
        info["runtime"]["driver"], "io_uring",
        "io_uring is expected on this machine (kernel or seccomp may block it): {info}"
    );
    assert!(gw.banner.contains("io_uring driver"), "{}", gw.banner);
    proxies_normally(&gw, &up);
}
