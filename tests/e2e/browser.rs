//! The page in a real browser: headless Chromium loads every status page from the running worker
//! at the narrowest phone (320 px), a common phone (375 px) and desktop (1280 px) widths, in light and dark, in English and Korean, and
//! saves a screenshot of each under `target/screenshots/` (printed). Each load must render (title,
//! event id visible), log no console error (a CSP violation is one), and fetch nothing but the
//! document. Then the feedback form is filled in and submitted like a visitor would, and the
//! feedback must reach the Sentry sink linked to the page's event.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::browser::{Browser, Page};
use crate::support::workerd::repo_root;
use crate::support::{is_event_id, Origin, Sink, SinkMode, Worker};

const LOAD: Duration = Duration::from_secs(15);
const RAY: &str = "8f0c2a9b1d3e4f56-AMS";

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target/screenshots");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(val(c))).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | x << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Sizes the viewport, picks the colour scheme and the visitor's language.
fn set_up(page: &mut Page, width: u32, dark: bool, lang: &str) {
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600 }),
    );
    page.call(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" } }] }),
    );
    let accept_language = if lang == "ko" {
        "ko-KR,ko;q=0.9,en;q=0.5"
    } else {
        "en-US,en;q=0.9"
    };
    page.call(
        "Network.setExtraHTTPHeaders",
        json!({ "headers": { "Accept-Language": accept_language, "CF-Ray": RAY } }),
    );
}

/// Waits for the load, then checks everything the page did since `events` were last taken.
/// Chromium logs a non-2xx document as "Failed to load resource"; for the document itself that
/// is the expected status (checked exactly), anything else logged at error level fails.
fn assert_clean_load(page: &mut Page, what: &str, url: &str, document_status: u16) {
    page.wait_event("Page.loadEventFired", LOAD);
    // Let late console messages (CSP reports are async) arrive.
    page.eval("new Promise(r => setTimeout(r, 150))");
    let events = page.take_events();
    let mut documents = Vec::new();
    for e in &events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" if p["type"] == "error" => {
                panic!("{what}: console error: {p}")
            }
            "Runtime.exceptionThrown" => panic!("{what}: exception: {p}"),
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                let entry = &p["entry"];
                let own_status = entry["source"] == "network"
                    && entry["url"] == url
                    && document_status >= 400
                    && entry["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(&format!("status of {document_status} ")));
                assert!(own_status, "{what}: browser error (CSP?): {entry}");
            }
            "Network.loadingFailed" => panic!("{what}: failed request: {p}"),
            "Network.requestWillBeSent" => {
                documents.push((p["type"].clone(), p["request"]["url"].clone()))
            }
            "Network.responseReceived" if p["type"] == "Document" => {
                assert_eq!(p["response"]["status"], document_status, "{what}: {p}");
            }
            _ => {}
        }
    }
    assert!(
        documents.iter().all(|(ty, _)| ty == "Document"),
        "{what}: the page fetched more than itself: {documents:?}"
    );
}

fn screenshot(page: &mut Page, name: &str) -> PathBuf {
    // Grow the viewport to the page's height so the whole page is in the picture.
    let metrics = page.call("Page.getLayoutMetrics", json!({}));
    let height = metrics["cssContentSize"]["height"]
        .as_f64()
        .unwrap_or(800.0)
        .ceil();
    let width = metrics["cssLayoutViewport"]["clientWidth"]
        .as_f64()
        .unwrap_or(375.0);
    let shot = page.call(
        "Page.captureScreenshot",
        json!({ "format": "png", "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 } }),
    );
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = screenshot_dir().join(format!("{name}.png"));
    fs::write(&path, png).unwrap();
    path
}

/// A key press as the keyboard sends it (down, then up).
fn press(page: &mut Page, key: &str, code: u32) {
    for kind in ["keyDown", "keyUp"] {
        let mut event = json!({ "type": kind, "key": key, "code": key,
                                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code });
        if key == "Enter" && kind == "keyDown" {
            event["text"] = json!("\r");
        }
        page.call("Input.dispatchKeyEvent", event);
    }
}

/// What the rendered page shows, read from the DOM.
fn rendered(page: &mut Page) -> Value {
    page.eval(
        r#"(() => {
            const id = document.getElementById('event-id');
            const box = id && id.getBoundingClientRect();
            const ray = document.getElementById('ray-id');
            return {
                title: document.title,
                lang: document.documentElement.lang,
                h1: (document.querySelector('main h1') || {}).textContent || '',
                eventId: id ? id.textContent : null,
                eventIdVisible: !!box && box.width > 0 && box.height > 0 &&
                    getComputedStyle(id).visibility === 'visible' && box.right <= innerWidth,
                rayId: ray ? ray.textContent : null,
                background: getComputedStyle(document.body).backgroundColor,
                overflowsX: document.documentElement.scrollWidth > innerWidth,
                landmarks: document.querySelectorAll('main').length,
                retry: !!document.querySelector('a.button'),
            };
        })()"#,
    )
}

#[test]
fn pages_render_in_chromium_and_feedback_reaches_sentry() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    // Every render must quote an event id: flood control (which would leave the 11th load of
    // the same route without one) is off here.
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_MAX_EVENTS_PER_MINUTE", "0"),
    ]);
    let browser = Browser::start();
    let mut page = browser.new_page();
    for domain in [
        "Page.enable",
        "Runtime.enable",
        "Network.enable",
        "Log.enable",
    ] {
        page.call(domain, json!({}));
    }
    let dir = screenshot_dir();
    eprintln!("screenshots: {}", dir.display());

    let mut loads = 0;
    for lang in ["en", "ko"] {
        for dark in [false, true] {
            for width in [320u32, 375, 1280] {
                set_up(&mut page, width, dark, lang);
                for status in [500u16, 502, 503, 504, 520] {
                    let what = format!(
                        "{lang}-{}-{width}-{status}",
                        if dark { "dark" } else { "light" }
                    );
                    page.take_events();
                    let url = format!("{}/status/{status}", worker.url());
                    page.call("Page.navigate", json!({ "url": url }));
                    assert_clean_load(&mut page, &what, &url, status);
                    loads += 1;
                    let r = rendered(&mut page);
                    assert_eq!(r["lang"], lang, "{what}: {r}");
                    let title = r["title"].as_str().unwrap_or_default();
                    assert!(
                        title.starts_with(&status.to_string()),
                        "{what}: title {title:?}"
                    );
                    assert!(
                        is_event_id(r["eventId"].as_str().unwrap_or_default()),
                        "{what}: {r}"
                    );
                    assert_eq!(
                        r["eventIdVisible"], true,
                        "{what}: event id not visible: {r}"
                    );
                    assert_eq!(r["rayId"], RAY, "{what}: {r}");
                    assert_eq!(r["overflowsX"], false, "{what}: horizontal scroll: {r}");
                    assert_eq!(
                        (r["landmarks"].clone(), r["retry"].clone()),
                        (json!(1), json!(true))
                    );
                    let dark_bg = r["background"] == "rgb(13, 17, 23)";
                    assert_eq!(dark_bg, dark, "{what}: colour scheme not applied: {r}");
                    screenshot(&mut page, &what);
                }
            }
        }
    }
    sink.wait_for_events(loads, LOAD);

    // The feedback form, as a visitor fills it in: Korean, dark, phone.
    set_up(&mut page, 375, true, "ko");
    page.take_events();
    let url = format!("{}/status/502", worker.url());
    page.call("Page.navigate", json!({ "url": url }));
    assert_clean_load(&mut page, "feedback page", &url, 502);
    let id = rendered(&mut page)["eventId"].as_str().unwrap().to_string();

    // Keyboard: Tab reaches the retry link first, then the form's disclosure, each with a
    // visible focus ring; Enter on the disclosure opens the form.
    let mut focus = Vec::new();
    for _ in 0..2 {
        press(&mut page, "Tab", 9);
        focus.push(page.eval(
            "(() => { const e = document.activeElement, s = getComputedStyle(e); \
             return [e.tagName, s.outlineStyle, s.outlineWidth]; })()",
        ));
    }
    assert_eq!(
        focus,
        [
            json!(["A", "solid", "3px"]),
            json!(["SUMMARY", "solid", "3px"])
        ],
        "keyboard focus order or focus ring"
    );
    screenshot(&mut page, "ko-dark-375-keyboard-focus");
    press(&mut page, "Enter", 13);
    let open = page.eval("document.querySelector('details.feedback').open");
    assert_eq!(open, true, "Enter on the summary opens the form");
    // Structure: one h1, the h2 of the form, every field labelled.
    let structure = page.eval(
        "({ h1: document.querySelectorAll('h1').length, \
            h2: document.querySelectorAll('details h2').length, \
            unlabelled: [...document.querySelectorAll('input:not([type=hidden]), textarea')] \
                .filter(e => e.labels.length === 0).length })",
    );
    assert_eq!(structure, json!({ "h1": 1, "h2": 1, "unlabelled": 0 }));
    let comments = "장바구니에서 결제 버튼을 눌렀는데 이 화면이 나왔어요.";
    for (selector, text) in [
        ("#fb-comments", comments),
        ("#fb-name", "김민지"),
        ("#fb-email", "minji@example.com"),
    ] {
        page.eval(&format!("document.querySelector('{selector}').focus()"));
        page.call("Input.insertText", json!({ "text": text }));
    }
    // Keyboard focus is visible: the focused field gets an outline.
    page.eval("document.querySelector('#fb-name').focus()");
    screenshot(&mut page, "ko-dark-375-feedback-form");
    page.take_events();
    page.eval("document.querySelector('details.feedback button[type=submit]').click()");
    let thanks_url = format!("{}/.edgeguard/feedback", worker.url());
    assert_clean_load(&mut page, "thank-you page", &thanks_url, 200);
    let r = rendered(&mut page);
    assert_eq!(r["lang"], "ko", "{r}");
    assert!(
        r["h1"].as_str().unwrap_or_default().contains("감사합니다"),
        "{r}"
    );
    let url = page.eval("location.pathname");
    assert_eq!(url, "/.edgeguard/feedback");
    screenshot(&mut page, "ko-dark-375-feedback-thanks");

    let feedback = sink.wait_for_feedback(1, LOAD);
    let ctx = &feedback[0]["contexts"]["feedback"];
    assert_eq!(ctx["associated_event_id"], id.as_str());
    assert_eq!(ctx["message"], comments);
    assert_eq!(ctx["name"], "김민지");
    assert_eq!(ctx["contact_email"], "minji@example.com");
    sink.assert_no_violations();
    assert!(origin
        .requests()
        .iter()
        .all(|r| !r.target.starts_with("/.edgeguard")));
    eprintln!(
        "screenshots: {} ({} pages + 2 feedback)",
        dir.display(),
        loads
    );
}
