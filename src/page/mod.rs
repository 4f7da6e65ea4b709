//! The page a visitor sees instead of a bare error, and its JSON twin for API clients.
//!
//! Templates are the files in `www/`, compiled into the worker by `build.rs` so the page still
//! works when everything else is failing. A template may use:
//!
//! | placeholder | value |
//! |---|---|
//! | `{{status}}` | the HTTP status, e.g. `502` |
//! | `{{reason}}` | its reason phrase, e.g. `Bad Gateway` |
//! | `{{event_id}}` | the Sentry event id to quote (empty when no event was sent) |
//! | `{{ray_id}}` | Cloudflare's ray id (empty when absent) |
//! | `{{misconfigured}}` | non-empty when the edge itself is misconfigured (bad `ORIGIN_URL`) |
//! | `{{feedback_token}}` | the signed token the feedback form posts back (empty when feedback is off) |
//! | `{{sent}}` | `feedback.html` only: non-empty when the feedback was accepted |
//! | `{{#name}}…{{/name}}` | the inner part only when `name` is non-empty |
//! | `{{^name}}…{{/name}}` | the inner part only when `name` is empty |
//!
//! Every substituted value is HTML-escaped. (`{{> file}}` partials are resolved at build time.)
//! Each language's pages come from `www/` (English, the fallback) or `www/<lang>/`.

pub mod lang;

use serde_json::{Map, Value};

/// One language's templates, as `build.rs` embeds them.
pub struct Language {
    pub tag: &'static str,
    pub default: &'static str,
    pub feedback: &'static str,
    /// `_name` files of the language's folder (English: of `www/`).
    pub partials: &'static [(&'static str, &'static str)],
    pub pages: &'static [(u16, &'static str)],
}

impl Language {
    /// A partial from this language's folder, else from `www/` (English's).
    fn partial(&self, name: &str) -> Option<&'static str> {
        let find = |l: &Language| l.partials.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        find(self).or_else(|| templates::LANGUAGES.first().and_then(find))
    }
}

mod templates {
    include!(concat!(env!("OUT_DIR"), "/pages.rs"));
}

/// What the page says.
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub event_id: Option<&'a str>,
    pub ray_id: Option<&'a str>,
    /// The language tag, one of [`languages`]; anything else gives English.
    pub lang: &'a str,
    /// The signed token for the feedback form; `None` hides the form.
    pub feedback_token: Option<&'a str>,
    /// The edge cannot proxy at all (bad `ORIGIN_URL`): the page says so, without details.
    pub misconfigured: bool,
}

/// The placeholders a template may name.
pub const PLACEHOLDERS: &[&str] = &[
    "status",
    "reason",
    "event_id",
    "ray_id",
    "feedback_token",
    "sent",
    "misconfigured",
];

/// The languages with pages, English (the fallback) first.
pub fn languages() -> impl Iterator<Item = &'static str> {
    templates::LANGUAGES.iter().map(|l| l.tag)
}

fn language(tag: &str) -> Option<&'static Language> {
    templates::LANGUAGES
        .iter()
        .find(|l| l.tag == tag)
        .or_else(|| templates::LANGUAGES.first())
}

impl PageInput<'_> {
    /// The HTML page, from the language's `<status>.html` when present, else its `default.html`.
    pub fn html(&self) -> String {
        let Some(language) = language(self.lang) else {
            return String::new();
        };
        let template = language
            .pages
            .iter()
            .find(|(s, _)| *s == self.status)
            .map_or(language.default, |(_, page)| page);
        let mut out = String::with_capacity(template.len() + 4096);
        render_into(&mut out, template, &|name| self.value(name), Some(language));
        out
    }

    /// `{"event_id":…,"ray_id":…,"reason":…,"status":…}`; absent ids are left out.
    pub fn json(&self) -> String {
        let mut body = Map::new();
        body.insert("status".into(), self.status.into());
        body.insert("reason".into(), self.reason.into());
        if let Some(id) = self.event_id {
            body.insert("event_id".into(), id.into());
        }
        if let Some(ray) = self.ray_id {
            body.insert("ray_id".into(), ray.into());
        }
        Value::Object(body).to_string()
    }

    fn value(&self, name: &str) -> String {
        match name {
            "status" => self.status.to_string(),
            "reason" => self.reason.to_owned(),
            "event_id" => self.event_id.unwrap_or_default().to_owned(),
            "ray_id" => self.ray_id.unwrap_or_default().to_owned(),
            "misconfigured" => if self.misconfigured { "1" } else { "" }.to_owned(),
            // The form needs both: a token without an id to link to is useless.
            "feedback_token" if self.event_id.is_some() => {
                self.feedback_token.unwrap_or_default().to_owned()
            }
            _ => String::new(),
        }
    }
}

/// The page answering a feedback POST: thanks when `sent`, else an apology with `status`.
pub fn feedback_html(lang: &str, status: u16, reason: &str, sent: bool) -> String {
    let Some(language) = language(lang) else {
        return String::new();
    };
    let value = |name: &str| match name {
        "status" => status.to_string(),
        "reason" => reason.to_owned(),
        "sent" if sent => "1".to_owned(),
        _ => String::new(),
    };
    let mut out = String::with_capacity(language.feedback.len() + 4096);
    render_into(&mut out, language.feedback, &value, Some(language));
    out
}

/// Every embedded template and partial, for checks.
pub fn all_templates() -> impl Iterator<Item = &'static str> {
    templates::LANGUAGES.iter().flat_map(|l| {
        [l.default, l.feedback]
            .into_iter()
            .chain(l.pages.iter().map(|(_, p)| *p))
            .chain(l.partials.iter().map(|(_, p)| *p))
    })
}

/// True when the client asked for JSON more than for HTML (`Accept` with q-values). A missing
/// header, `*/*` or a browser's usual header gives HTML.
pub fn prefers_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let (mut json_q, mut html_q) = (0u16, 0u16);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(crate::page::lang::parse_q)
            .unwrap_or(1000);
        if media == "application/json" || media.ends_with("+json") {
            json_q = json_q.max(q);
        } else if media == "text/html" || media == "application/xhtml+xml" {
            html_q = html_q.max(q);
        }
    }
    json_q > 0 && json_q > html_q
}

/// Renders `template`, asking `value` for each placeholder. Malformed tags are copied as text.
pub fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    render_into(&mut out, template, &value, None);
    out
}

/// Renders into `out`. `{{> _name}}` includes a partial of `partials`' language (one level:
/// a partial's own `{{> }}` tags render as nothing, so no include can loop).
fn render_into(
    out: &mut String,
    mut rest: &str,
    value: &dyn Fn(&str) -> String,
    partials: Option<&Language>,
) {
    while let Some(start) = find_double(rest, b'{') {
        let (text, tail) = rest.split_at(start);
        out.push_str(text);
        let Some(end) = find_double(tail, b'}') else {
            out.push_str(tail);
            return;
        };
        let tag = tail.get(2..end).unwrap_or_default().trim();
        let after = tail.get(end + 2..).unwrap_or_default();
        let section = tag
            .strip_prefix('#')
            .map(|name| (name, true))
            .or_else(|| tag.strip_prefix('^').map(|name| (name, false)));
        match section {
            Some((name, when_present)) => {
                let close = format!("{{{{/{name}}}}}");
                let Some(close_at) = after.find(&close) else {
                    // Unclosed section: show it literally rather than drop content.
                    out.push_str(tail.get(..end + 2).unwrap_or_default());
                    rest = after;
                    continue;
                };
                let inner = after.get(..close_at).unwrap_or_default();
                if value(name.trim()).is_empty() != when_present {
                    render_into(out, inner, value, partials);
                }
                rest = after.get(close_at + close.len()..).unwrap_or_default();
            }
            None => {
                if let Some(name) = tag.strip_prefix('>') {
                    if let Some(text) = partials.and_then(|l| l.partial(name.trim())) {
                        render_into(out, text, value, None);
                    }
                } else {
                    escape_html_into(out, &value(tag));
                }
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Where `brace` first appears twice in a row in `text` (`{{` or `}}`), as `str::find` with the
/// two-character string would say. A scan for the one character: `find("{{")` sets up a
/// two-way searcher on every call, which was 1.5% of a failing request's CPU in a profile.
fn find_double(text: &str, brace: u8) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text.get(from..)?.find(char::from(brace)) {
        let at = from + at;
        if text.as_bytes().get(at + 1) == Some(&brace) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape_html_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_double_agrees_with_find() {
        for text in [
            "",
            "{",
            "{{",
            "{{{",
            "a{b{{c",
            "}}",
            "a}b}}",
            "{}{}",
            "é{{x}}",
            "{ {",
            "x{{y}}z}}",
        ] {
            assert_eq!(find_double(text, b'{'), text.find("{{"), "{text:?}");
            assert_eq!(find_double(text, b'}'), text.find("}}"), "{text:?}");
        }
    }

    use super::*;

    fn vars(name: &str) -> String {
        match name {
            "a" => "<b>&\"'</b>".into(),
            "yes" => "1".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(
            render("x{{a}}y", vars),
            "x&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;y"
        );
        assert_eq!(
            render("{{ a }}", vars),
            "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;"
        );
        assert_eq!(render("[{{missing}}]", vars), "[]");
    }

    #[test]
    fn sections_follow_presence() {
        assert_eq!(
            render("{{#yes}}Y{{a}}{{/yes}}|{{^yes}}N{{/yes}}", vars),
            "Y&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;|"
        );
        assert_eq!(render("{{#no}}Y{{/no}}|{{^no}}N{{/no}}", vars), "|N");
    }

    #[test]
    fn malformed_tags_are_kept_as_text() {
        assert_eq!(render("a {{ b", vars), "a {{ b");
        assert_eq!(render("{{#yes}}open", vars), "{{#yes}}open");
        assert_eq!(render("}} {", vars), "}} {");
    }

    #[test]
    fn page_shows_the_event_id_only_when_sent() {
        let with = PageInput {
            status: 502,
            reason: "Bad Gateway",
            event_id: Some("0123456789abcdef0123456789abcdef"),
            ray_id: Some("8f00-AMS"),
            misconfigured: false,
            lang: "en",
            feedback_token: None,
        };
        let html = with.html();
        assert!(html.contains("0123456789abcdef0123456789abcdef"));
        assert!(html.contains("8f00-AMS"));
        assert!(html.contains("502"));
        let without = PageInput {
            event_id: None,
            ray_id: None,
            ..with
        };
        let html = without.html();
        assert!(!html.to_lowercase().contains("event id"), "{html}");
        assert!(!html.contains("{{"));
    }

    #[test]
    fn every_status_gets_a_page_and_templates_use_known_placeholders() {
        for (lang, status) in
            languages().flat_map(|l| [500, 501, 502, 503, 504, 520, 599].map(move |s| (l, s)))
        {
            let page = PageInput {
                status,
                reason: "R",
                event_id: Some("e"),
                ray_id: Some("r"),
                misconfigured: false,
                lang,
                feedback_token: Some("1.ab"),
            };
            let html = page.html();
            assert!(html.starts_with("<!doctype html>"), "{status}");
            assert!(!html.contains("{{"), "{status}: leftover tag");
            assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{lang}");
            // The shared partials were included: the CSS and the feedback form.
            assert!(html.contains(":root{color-scheme:light dark"), "{lang}");
            assert!(html.contains("action=\"/.edgeguard/feedback\""), "{lang}");
        }
        for template in all_templates() {
            let mut rest = template;
            while let Some(start) = rest.find("{{") {
                let tail = &rest[start + 2..];
                let end = tail.find("}}").unwrap();
                let tag = tail[..end].trim();
                let name = tag.trim_start_matches(['#', '^', '/']).trim();
                assert!(
                    tag.starts_with('>') || PLACEHOLDERS.contains(&name),
                    "unknown placeholder {name:?}"
                );
                rest = &tail[end..];
            }
        }
    }

    #[test]
    fn reflected_values_are_escaped_in_the_page() {
        let page = PageInput {
            status: 500,
            reason: "<script>alert(1)</script>",
            event_id: Some("\"><script>"),
            ray_id: None,
            misconfigured: false,
            lang: "ko",
            feedback_token: Some("\"><script>"),
        };
        let html = page.html();
        assert!(!html.contains("<script>"), "{html}");
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn full(lang: &'static str, status: u16) -> PageInput<'static> {
        PageInput {
            status,
            reason: "Gateway Timeout",
            event_id: Some(ID),
            ray_id: Some("8f0c2a9b1d3e4f56-AMS"),
            lang,
            feedback_token: Some("1795521600.0123456789abcdef0123456789abcdef"),
            misconfigured: false,
        }
    }

    #[test]
    fn english_and_korean_are_built_in_english_first() {
        let langs: Vec<_> = languages().collect();
        assert_eq!(langs.first(), Some(&"en"));
        assert!(langs.contains(&"ko"), "{langs:?}");
        let ko = full("ko", 502).html();
        assert!(ko.contains("<html lang=\"ko\">"));
        assert!(ko.contains("사이트에 연결할 수 없습니다"), "{ko}");
        assert!(ko.contains("다시 시도"));
        // Unknown language: English.
        let xx = full("xx", 502).html();
        assert!(xx.contains("<html lang=\"en\">"));
        assert_eq!(xx, full("en", 502).html());
    }

    #[test]
    fn feedback_form_needs_an_event_and_a_token() {
        let html = full("en", 500).html();
        assert!(html.contains(r#"<form method="post" action="/.edgeguard/feedback">"#));
        assert!(html.contains(&format!(r#"name="event_id" value="{ID}""#)));
        assert!(
            html.contains(r#"name="token" value="1795521600.0123456789abcdef0123456789abcdef""#)
        );
        for page in [
            PageInput {
                feedback_token: None,
                ..full("en", 500)
            },
            PageInput {
                event_id: None,
                ..full("en", 500)
            },
        ] {
            let html = page.html();
            assert!(!html.contains("<form"), "{html}");
            assert!(!html.contains("feedback"), "{html}");
        }
    }

    /// The issue's budget: every page under 10 KB with the longest values it can carry.
    #[test]
    fn every_page_is_under_10_kb() {
        for lang in languages() {
            for status in [500, 502, 503, 504, 520] {
                let len = full(lang, status).html().len();
                eprintln!("page size {lang}/{status}: {len} bytes");
                assert!(len < 10 * 1024, "{lang}/{status}: {len} bytes");
            }
            for sent in [true, false] {
                let len = feedback_html(lang, 403, "Forbidden", sent).len();
                eprintln!("page size {lang}/feedback (sent: {sent}): {len} bytes");
                assert!(len < 10 * 1024, "{lang}/feedback: {len} bytes");
            }
        }
    }

    #[test]
    fn feedback_page_thanks_or_apologises() {
        let thanks = feedback_html("en", 200, "OK", true);
        assert!(thanks.contains("Thank you"), "{thanks}");
        assert!(!thanks.contains("could not be sent"));
        let sorry = feedback_html("en", 403, "Forbidden", false);
        assert!(
            sorry.contains("could not be sent") && sorry.contains("403"),
            "{sorry}"
        );
        let ko = feedback_html("ko-KR-not-negotiated", 200, "OK", true);
        assert!(ko.contains("<html lang=\"en\">"));
        let ko = feedback_html("ko", 200, "OK", true);
        assert!(ko.contains("감사합니다") && ko.contains("<html lang=\"ko\">"));
        for page in [thanks, sorry, ko] {
            assert!(!page.contains("{{"), "{page}");
        }
    }

    /// WCAG 2.x contrast of the theme colours in `www/_style.css`, light and dark: text ≥ 4.5:1
    /// (AA), input borders and the focus ring ≥ 3:1 (non-text contrast).
    #[test]
    fn both_themes_meet_wcag_aa_contrast() {
        let css = include_str!("../../www/_style.css");
        let (light, dark) = css
            .split_once("@media (prefers-color-scheme:dark)")
            .unwrap();
        let vars = |block: &str| -> Vec<(String, String)> {
            block
                .split(['{', ';', '}'])
                .filter_map(|decl| decl.trim().strip_prefix("--")?.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect()
        };
        let luminance = |hex: &str| {
            let hex = hex.trim_start_matches('#');
            let hex = if hex.len() == 3 {
                hex.chars().flat_map(|c| [c, c]).collect()
            } else {
                hex.to_string()
            };
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
        };
        let light_vars = vars(light);
        let dark_block = dark.split("}}").next().unwrap();
        for (theme, overrides) in [("light", vec![]), ("dark", vars(dark_block))] {
            let get = |name: &str| {
                overrides
                    .iter()
                    .chain(&light_vars)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("--{name} missing"))
            };
            for (fg, bg, need) in [
                ("fg", "card", 4.5),
                ("fg", "bg", 4.5),
                ("fg", "code", 4.5),
                ("muted", "card", 4.5),
                ("accent", "card", 4.5),
                ("on-accent", "accent", 4.5),
                ("field", "card", 3.0),
                ("accent", "bg", 3.0),
            ] {
                let (a, b) = (luminance(&get(fg)), luminance(&get(bg)));
                let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
                assert!(
                    ratio >= need,
                    "{theme}: --{fg} on --{bg} is {ratio:.2}:1, need {need}"
                );
            }
        }
    }

    #[test]
    fn misconfigured_page_says_so_without_details() {
        let page = PageInput {
            status: 500,
            reason: "Internal Server Error",
            event_id: None,
            ray_id: None,
            lang: "en",
            feedback_token: None,
            misconfigured: true,
        };
        let html = page.html();
        assert!(html.contains("misconfigured"), "{html}");
        let ko = PageInput { lang: "ko", ..page }.html();
        assert!(ko.contains("설정이 잘못되었습니다"), "{ko}");
        let normal = PageInput {
            misconfigured: false,
            ..page
        }
        .html();
        assert!(!normal.contains("misconfigured"), "{normal}");
    }

    #[test]
    fn json_body() {
        let page = PageInput {
            status: 503,
            reason: "Service Unavailable",
            event_id: Some("ab"),
            ray_id: None,
            misconfigured: false,
            lang: "en",
            feedback_token: None,
        };
        assert_eq!(
            page.json(),
            r#"{"event_id":"ab","reason":"Service Unavailable","status":503}"#
        );
        let page = PageInput {
            event_id: None,
            ..page
        };
        assert_eq!(
            page.json(),
            r#"{"reason":"Service Unavailable","status":503}"#
        );
    }

    #[test]
    fn accept_negotiation() {
        let table = [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), true),
            (Some("application/problem+json"), true),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                false,
            ),
            (Some("application/json, text/plain, */*"), true),
            (Some("text/html;q=0.5, application/json;q=0.9"), true),
            (Some("application/json;q=0.4, text/html"), false),
            (Some("application/json;q=0"), false),
        ];
        for (accept, want) in table {
            assert_eq!(prefers_json(accept), want, "{accept:?}");
        }
    }
}
