//! WebSocket upgrades pass through to the origin: 101, then frames both ways.

use std::time::Duration;

use crate::support::origin::WS_GREETING;
use crate::support::ws::{Client, OP_CLOSE, OP_TEXT};
use crate::support::{Origin, Worker};

#[test]
fn a_websocket_upgrade_reaches_the_origin_and_frames_flow_both_ways() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let mut ws = Client::connect(worker.port(), "/ws", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("upgrade through the worker: {e}\n{}", worker.logs()));

    assert_eq!(ws.status, 101, "{:?}", ws.headers);
    assert_eq!(
        ws.recv().unwrap(),
        (OP_TEXT, WS_GREETING.as_bytes().to_vec())
    );
    for text in ["first frame from the visitor", "second, ünïcödé"] {
        ws.send_text(text).unwrap();
        let (opcode, payload) = ws.recv().unwrap();
        assert_eq!(opcode, OP_TEXT);
        assert_eq!(String::from_utf8(payload).unwrap(), format!("echo: {text}"));
    }
    ws.send_close().unwrap();
    let (opcode, _) = ws.recv().unwrap();
    assert_eq!(opcode, OP_CLOSE);

    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/ws"));
    assert!(
        r.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "{r:?}"
    );
    assert!(r.header("edgeguard-via").is_some(), "{r:?}");
}
