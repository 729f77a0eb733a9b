//! Twilio's WhatsApp webhook and REST API: the `X-Twilio-Signature` check (as Twilio's SDKs
//! compute it), the inbound form, and sending messages.
//!
//! The signature is `base64(HMAC-SHA1(auth_token, url + sorted name/value pairs))`. Like the
//! SDKs we accept the URL with its port removed or with the default port added, and node's
//! `'` → `%27` normalisation, because Twilio's own signing is inconsistent about both.

use crate::config::TwilioConfig;
use crate::{SendError, media};
use base64::Engine;
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for a form POST to `url` with `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    // Names sorted byte-wise; a repeated name's values sorted and de-duplicated (python, node).
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in params {
        by_name.entry(name).or_default().push(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, mut values) in by_name {
        values.sort_unstable();
        values.dedup();
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is a valid signature for `url` and `params`, in constant time per variant.
pub fn is_valid(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let mut valid = false;
    for candidate in url_variants(url) {
        let expected = signature(auth_token, &candidate, params);
        valid |= bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
    }
    valid
}

/// The URL forms the SDKs try: as given, without its port, with the default port added, and
/// each with `'` percent-encoded.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((user, hp)) => (format!("{user}@"), hp),
            None => (String::new(), authority),
        };
        let (host, port) = split_port(host_port);
        let default_port = if scheme == "https" { "443" } else { "80" };
        let with_port = format!("{host}:{}", port.unwrap_or(default_port));
        variants.push(format!("{scheme}://{userinfo}{host}{tail}"));
        variants.push(format!("{scheme}://{userinfo}{with_port}{tail}"));
    }
    let encoded: Vec<String> = variants
        .iter()
        .filter(|v| v.contains('\''))
        .map(|v| v.replace('\'', "%27"))
        .collect();
    variants.extend(encoded);
    variants.dedup();
    variants
}

/// `host:1234` → (`host`, `Some("1234")`); brackets keep an IPv6 host's colons apart.
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some((host, port)) = host_port.rsplit_once(':') {
        let bracketed_ok = !host.starts_with('[') || host.ends_with(']');
        if !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && !host.is_empty()
            && bracketed_ok
        {
            return (host, Some(port));
        }
    }
    (host_port, None)
}

/// The fields of an inbound WhatsApp message the relay uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Inbound {
    pub message_sid: String,
    /// `whatsapp:+15551234567`.
    pub from: String,
    pub body: String,
    /// (URL, content type) of each attached media item.
    pub media: Vec<(String, String)>,
    /// The id of the quick reply tapped, when the message is a tap (`ButtonPayload`).
    pub button_payload: Option<String>,
}

/// Reads an inbound form; `None` when it is not a message (no `MessageSid` or `From`).
pub fn parse_inbound(params: &[(String, String)]) -> Option<Inbound> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let message_sid = get("MessageSid")
        .or_else(|| get("SmsMessageSid"))
        .filter(|s| !s.is_empty())?;
    let from = get("From").filter(|s| !s.is_empty())?;
    let count: usize = get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(10);
    let media = (0..count)
        .filter_map(|i| {
            Some((
                get(&format!("MediaUrl{i}"))?,
                get(&format!("MediaContentType{i}")).unwrap_or_default(),
            ))
        })
        .collect();
    Some(Inbound {
        message_sid,
        from,
        body: get("Body").unwrap_or_default(),
        media,
        button_payload: get("ButtonPayload").filter(|p| !p.is_empty()),
    })
}

/// Sends one WhatsApp message (text and/or public media URLs) to `to`.
pub async fn send(
    http: &reqwest::Client,
    config: &TwilioConfig,
    to: &str,
    body: &str,
    media_urls: &[String],
) -> Result<(), SendError> {
    let mut form: Vec<(&str, &str)> = vec![("To", to)];
    if !body.is_empty() {
        form.push(("Body", body));
    }
    for media in media_urls {
        form.push(("MediaUrl", media));
    }
    send_form(http, config, &form).await
}

/// Sends one WhatsApp message from the configured number, given the rest of its form (`To`,
/// and `Body`, `MediaUrl` or `ContentSid`).
pub async fn send_form(
    http: &reqwest::Client,
    config: &TwilioConfig,
    fields: &[(&str, &str)],
) -> Result<(), SendError> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        config.api_base, config.account_sid
    );
    let mut form: Vec<(&str, &str)> = vec![("From", &config.from)];
    form.extend_from_slice(fields);
    let response = http
        .post(url)
        .basic_auth(&config.account_sid, Some(&config.auth_token))
        .form(&form)
        .send()
        .await
        .map_err(|e| SendError::Retry {
            reason: format!("Twilio unreachable: {}", e.without_url()),
            after: None,
        })?;
    classify(response, "Twilio").await
}

/// Where Twilio's media URLs redirect: its CDN (`mms.twiliocdn.com`) or an S3 bucket
/// (docs/channels.md, "Inbound media download"). A `*.` entry matches any subdomain.
pub const MEDIA_HOSTS: &[&str] = &[
    "*.twilio.com",
    "*.twiliocdn.com",
    "s3-external-1.amazonaws.com",
];

/// Downloads inbound media: only from Twilio's API host (the only place the credentials are
/// sent), following redirects only to Twilio's media hosts (reqwest drops the credentials on
/// a redirect to another host), at most [`media::INBOUND_MAX_BYTES`] within [`media::INBOUND_TIMEOUT`].
pub async fn download(
    config: &TwilioConfig,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, SendError> {
    let refuse = |why: &str| SendError::Permanent(why.to_string());
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse("the media URL is not a URL"))?;
    let api = reqwest::Url::parse(&config.api_base).map_err(|_| refuse("TWILIO_API_BASE"))?;
    if media::host_of(&parsed) != media::host_of(&api) || parsed.scheme() != api.scheme() {
        return Err(refuse(
            "the media URL is not on Twilio's API host, so it was not fetched",
        ));
    }
    let mut allowed = config.media_hosts.clone();
    allowed.push(media::host_of(&api));
    let fetch = media::BoundedFetch {
        allowed_hosts: allowed,
        max_bytes: limit,
        timeout: media::INBOUND_TIMEOUT,
    };
    fetch
        .get(parsed, Some((&config.account_sid, &config.auth_token)))
        .await
}

/// Maps an HTTP answer to success, retry (429, 5xx) or a permanent failure with the service's
/// own message.
pub(crate) async fn classify(response: reqwest::Response, service: &str) -> Result<(), SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or(v.get("description"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let reason = format!("{service} answered {status}: {message}");
    if status.as_u16() == 429 || status.is_server_error() {
        Err(SendError::Retry { reason, after })
    } else {
        Err(SendError::Permanent(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn media_redirects_are_followed_only_to_twilio_s_hosts() {
        let allowed: Vec<String> = MEDIA_HOSTS.iter().map(|h| h.to_string()).collect();
        for ok in [
            "mms.twiliocdn.com",
            "api.twilio.com",
            "s3-external-1.amazonaws.com",
        ] {
            assert!(media::host_allowed(ok, &allowed), "{ok}");
        }
        for no in [
            "twiliocdn.com.evil.example",
            "evil-twilio.com",
            "169.254.169.254",
            "localhost:80",
        ] {
            assert!(!media::host_allowed(no, &allowed), "{no}");
        }
    }

    // Vectors from Twilio's SDK test suites (see docs/channels.md).
    #[test]
    fn official_base_vector() {
        assert_eq!(
            signature(TOKEN, URL, &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(is_valid(
            TOKEN,
            URL,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn port_variants_are_accepted_both_ways() {
        // Signed with :443 added; our configured URL has no port.
        assert!(is_valid(
            TOKEN,
            URL,
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        // Signed without the port; configured with it.
        assert!(is_valid(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // http with port 80 added.
        assert!(is_valid(
            TOKEN,
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &params(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
        // A non-default port is kept.
        assert!(is_valid(
            TOKEN,
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &params(),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
    }

    #[test]
    fn wrong_signatures_are_refused() {
        for bad in [
            "WRONG_SIGNATURE",
            "IncorrectSignatureValue123=",
            "95+Bu0JVPi0r/SsESZCVf0dWAjw=",
            "",
        ] {
            assert!(!is_valid(TOKEN, URL, &params(), bad), "{bad}");
        }
        assert!(!is_valid(
            "other",
            URL,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut tampered = params();
        tampered[2].1 = "9999".into();
        assert!(!is_valid(
            TOKEN,
            URL,
            &tampered,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn repeated_names_sort_and_dedupe_values() {
        let a = vec![
            ("A".to_string(), "2".to_string()),
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
        ];
        let b = vec![("A".to_string(), "1".to_string()), ("A".into(), "2".into())];
        assert_eq!(signature(TOKEN, URL, &a), signature(TOKEN, URL, &b));
        // Byte-wise name order: uppercase before lowercase.
        let upper_first = vec![("b".to_string(), "x".to_string()), ("B".into(), "y".into())];
        let mut mac_input = URL.to_string();
        mac_input.push_str("Bybx");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(mac_input.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(signature(TOKEN, URL, &upper_first), expected);
    }

    #[test]
    fn inbound_form_is_read() {
        let form: Vec<(String, String)> = [
            ("MessageSid", "SM1"),
            ("From", "whatsapp:+15551234567"),
            ("Body", "hi"),
            ("NumMedia", "1"),
            ("MediaUrl0", "https://api.twilio.com/x"),
            ("MediaContentType0", "image/jpeg"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let inbound = parse_inbound(&form).unwrap();
        assert_eq!(inbound.from, "whatsapp:+15551234567");
        assert_eq!(
            inbound.media,
            [(
                "https://api.twilio.com/x".to_string(),
                "image/jpeg".to_string()
            )]
        );
        assert!(parse_inbound(&form[1..]).is_none());
    }
}
