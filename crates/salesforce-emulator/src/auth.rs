//! OAuth 2.0 (spec §2): authorize (HTML consent page), token (authorization_code,
//! refresh_token, client_credentials with body or HTTP Basic credentials, password),
//! userinfo, revoke, and the identity URL `/id/{org}/{user}`.

use std::time::Instant;

use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use rand::Rng;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::http::Reply;
use crate::ids;
use crate::state::{AppState, AuthCode, Session};
use crate::value::format_datetime;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn random_token(len: usize) -> String {
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CH[rng.random_range(0..CH.len())] as char)
        .collect()
}

fn random_alnum(len: usize) -> String {
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CH[rng.random_range(0..CH.len())] as char)
        .collect()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(ih);
    outer.finalize().to_vec()
}

/// Form or query parameters as pairs.
pub fn params(s: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(s).unwrap_or_default()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The bearer/session token of a request, if any (`Authorization: Bearer|OAuth`,
/// `X-SFDC-Session`, or `oauth_token=` in the query).
pub fn request_token(headers: &HeaderMap, query: &str) -> Option<String> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        for p in ["Bearer ", "bearer ", "OAuth ", "oauth "] {
            if let Some(t) = v.strip_prefix(p) {
                return Some(t.trim().to_string());
            }
        }
    }
    if let Some(v) = headers.get("x-sfdc-session").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    get(&params(query.as_bytes()), "oauth_token").map(str::to_string)
}

/// Whether a token is a live session.
pub fn valid(st: &AppState, token: &str) -> bool {
    let mut t = st.tokens();
    match t.sessions.get(token) {
        Some(s) if s.expires > Instant::now() => true,
        Some(_) => {
            t.sessions.remove(token);
            false
        }
        None => false,
    }
}

/// 401 body of an invalid or expired session (spec §0 rule 8).
pub fn invalid_session() -> Reply {
    Reply::json(
        StatusCode::UNAUTHORIZED,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
    )
}

fn ids18(st: &AppState) -> (String, String) {
    let org = st.org();
    (ids::to18(&org.org_id), ids::to18(&org.user_id))
}

fn issue(st: &AppState, scope: &str, with_refresh: bool) -> Json {
    let org15 = st.org().org_id.clone();
    let access = format!("{org15}!{}", random_token(96));
    let issued = crate::state::Clock::real_ms().to_string();
    let mut t = st.tokens();
    t.sessions.insert(
        access.clone(),
        Session {
            expires: Instant::now() + st.token_ttl(),
            scope: scope.to_string(),
        },
    );
    let refresh = with_refresh.then(|| {
        let r = format!("5Aep{}", random_alnum(83));
        t.refresh.insert(r.clone(), scope.to_string());
        r
    });
    drop(t);
    let base = st.base();
    let (org, user) = ids18(st);
    let id = format!("{base}/id/{org}/{user}");
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        st.config.client_secret.as_bytes(),
        format!("{id}{issued}").as_bytes(),
    ));
    let mut m = serde_json::Map::new();
    m.insert("access_token".into(), Json::String(access));
    if let Some(r) = refresh {
        m.insert("refresh_token".into(), Json::String(r));
    }
    m.insert("signature".into(), Json::String(sig));
    m.insert("scope".into(), Json::String(scope.to_string()));
    m.insert("instance_url".into(), Json::String(base));
    m.insert("id".into(), Json::String(id));
    m.insert("token_type".into(), Json::String("Bearer".into()));
    m.insert("issued_at".into(), Json::String(issued));
    Json::Object(m)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Reply {
    let q = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    Reply::redirect(format!("{uri}{sep}{q}"))
}

/// Handles `/services/oauth2/*`.
pub fn handle(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let sub = path
        .trim_start_matches("/services/oauth2")
        .trim_start_matches('/');
    match (sub, method.as_str()) {
        ("authorize", "GET") => authorize_page(st, &params(query.as_bytes())),
        ("authorize", "POST") => {
            let mut p = params(query.as_bytes());
            p.extend(params(body));
            authorize_decide(st, &p)
        }
        ("token", "POST") => {
            let mut p = params(body);
            p.extend(params(query.as_bytes()));
            token(st, &p, headers)
        }
        ("userinfo", "GET" | "POST") => match request_token(headers, query) {
            Some(t) if valid(st, &t) => Reply::json(StatusCode::OK, userinfo(st)),
            _ => Reply::json(
                StatusCode::FORBIDDEN,
                json!({"error": "invalid_token", "error_description": "Bad_OAuth_Token"}),
            )
            .with_status(StatusCode::UNAUTHORIZED),
        },
        ("revoke", "POST" | "GET") => {
            let mut p = params(body);
            p.extend(params(query.as_bytes()));
            let Some(tok) = get(&p, "token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "missing token parameter",
                );
            };
            let mut t = st.tokens();
            let a = t.sessions.remove(tok).is_some();
            let r = t.refresh.remove(tok).is_some();
            if a || r {
                Reply::empty(StatusCode::OK)
            } else {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_token_type",
                    "this token type is not supported",
                )
            }
        }
        ("authorize" | "token" | "userinfo" | "revoke", _) => Reply::json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!([{"errorCode": "METHOD_NOT_ALLOWED", "message": format!("HTTP Method '{method}' not allowed.")}]),
        ),
        _ => crate::http::not_found(),
    }
}

fn authorize_page(st: &AppState, p: &[(String, String)]) -> Reply {
    let client_id = get(p, "client_id").unwrap_or("");
    let Some(redirect) = get(p, "redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "redirect_uri_missing",
            "redirect_uri must not be empty",
        );
    };
    if client_id != st.config.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client identifier invalid",
        );
    }
    if get(p, "response_type").unwrap_or("code") != "code" {
        return redirect_with(
            redirect,
            &[
                ("error", "unsupported_response_type"),
                ("error_description", "response type not supported"),
            ],
        );
    }
    let hidden: String = p
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect::<Vec<_>>()
        .join("\n      ");
    let user = html_escape(&st.config.username);
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Allow Access? | Ferry Salesforce Emulator</title></head>\n<body>\n  <h1>Allow Access?</h1>\n  <p><b>{app}</b> is asking to access the emulated org as <b>{user}</b>.</p>\n  <form id=\"oauth\" method=\"POST\" action=\"/services/oauth2/authorize\">\n      {hidden}\n      <button type=\"submit\" name=\"approve\" value=\"allow\" id=\"oaapprove\">Allow</button>\n      <button type=\"submit\" name=\"approve\" value=\"deny\" id=\"oadeny\">Deny</button>\n  </form>\n</body></html>\n",
        app = html_escape(client_id)
    );
    Reply::html(html)
}

fn authorize_decide(st: &AppState, p: &[(String, String)]) -> Reply {
    let client_id = get(p, "client_id").unwrap_or("");
    let Some(redirect) = get(p, "redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "redirect_uri_missing",
            "redirect_uri must not be empty",
        );
    };
    if client_id != st.config.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client identifier invalid",
        );
    }
    let state = get(p, "state");
    if get(p, "approve") != Some("allow") {
        let mut pairs = vec![
            ("error", "access_denied"),
            ("error_description", "end-user denied authorization"),
        ];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        return redirect_with(redirect, &pairs);
    }
    let code = format!("aPrx{}", random_alnum(60));
    st.tokens().codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.to_string(),
            redirect_uri: redirect.to_string(),
            scope: get(p, "scope").unwrap_or("").to_string(),
            code_challenge: get(p, "code_challenge").map(str::to_string),
            issued: Instant::now(),
        },
    );
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect_with(redirect, &pairs)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let enc = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()?;
    let s = String::from_utf8(dec).ok()?;
    let (id, secret) = s.split_once(':')?;
    let id = percent_decode(id);
    let secret = percent_decode(secret);
    Some((id, secret))
}

fn percent_decode(s: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!(
        "x={}",
        s.replace('&', "%26").replace('=', "%3D")
    ))
    .ok()
    .and_then(|v| v.into_iter().next())
    .map_or_else(|| s.to_string(), |(_, v)| v)
}

fn scope_text(requested: &str) -> String {
    if requested.trim().is_empty() {
        "api refresh_token".into()
    } else {
        requested.trim().to_string()
    }
}

fn token(st: &AppState, p: &[(String, String)], headers: &HeaderMap) -> Reply {
    let basic = basic_credentials(headers);
    let client_id = get(p, "client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let client_secret = get(p, "client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(grant) = get(p, "grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    };
    let check_client = |secret_required: bool| -> Option<Reply> {
        match &client_id {
            Some(id) if *id == st.config.client_id => {}
            _ => {
                return Some(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_id",
                    "client identifier invalid",
                ));
            }
        }
        match &client_secret {
            Some(s) if *s == st.config.client_secret => None,
            None if !secret_required => None,
            _ => Some(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "invalid client credentials",
            )),
        }
    };
    match grant {
        "password" => {
            if let Some(r) = check_client(true) {
                return r;
            }
            let (Some(user), Some(pass)) = (get(p, "username"), get(p, "password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "authentication failure",
                );
            };
            if user != st.config.username || !pass.starts_with(&st.config.password) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "authentication failure",
                );
            }
            Reply::json(
                StatusCode::OK,
                issue(st, &scope_text(get(p, "scope").unwrap_or("api")), false),
            )
        }
        "client_credentials" => {
            if let Some(r) = check_client(true) {
                return r;
            }
            Reply::json(StatusCode::OK, issue(st, "api", false))
        }
        "authorization_code" => {
            let Some(code) = get(p, "code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "authentication failure",
                );
            };
            let pending = st.tokens().codes.remove(code);
            let Some(pending) = pending else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "invalid authorization code",
                );
            };
            if pending.issued.elapsed().as_secs() > 15 * 60 {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "expired authorization code",
                );
            }
            let verifier = get(p, "code_verifier");
            let pkce_ok = match (&pending.code_challenge, verifier) {
                (Some(ch), Some(v)) => {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(v.as_bytes()))
                        == *ch
                        || ch == v
                }
                (Some(_), None) => false,
                (None, _) => true,
            };
            if !pkce_ok {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "invalid code verifier",
                );
            }
            if let Some(r) = check_client(pending.code_challenge.is_none()) {
                return r;
            }
            if client_id.as_deref() != Some(pending.client_id.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "authentication failure",
                );
            }
            if let Some(r) = get(p, "redirect_uri")
                && r != pending.redirect_uri
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri_mismatch",
                    "redirect_uri must match configuration",
                );
            }
            let scope = scope_text(&pending.scope);
            let refresh = pending.scope.trim().is_empty()
                || scope
                    .split_whitespace()
                    .any(|s| s == "refresh_token" || s == "offline_access" || s == "full");
            Reply::json(StatusCode::OK, issue(st, &scope, refresh))
        }
        "refresh_token" => {
            if let Some(r) = check_client(false) {
                return r;
            }
            let Some(rt) = get(p, "refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "expired access/refresh token",
                );
            };
            let rotate = st.faults().rotate_refresh_tokens;
            let scope = if rotate {
                st.tokens().refresh.remove(rt)
            } else {
                st.tokens().refresh.get(rt).cloned()
            };
            match scope {
                Some(scope) => Reply::json(StatusCode::OK, issue(st, &scope, rotate)),
                None => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "expired access/refresh token",
                ),
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            if get(p, "assertion").is_none() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "assertion is required",
                );
            }
            Reply::json(StatusCode::OK, issue(st, "api", false))
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        ),
    }
}

fn urls(base: &str, org: &str, user: &str) -> Json {
    let d = format!("{base}/services/data/v{{version}}");
    json!({
        "enterprise": format!("{base}/services/Soap/c/{{version}}/{org}"),
        "metadata": format!("{base}/services/Soap/m/{{version}}/{org}"),
        "partner": format!("{base}/services/Soap/u/{{version}}/{org}"),
        "rest": format!("{d}/"),
        "sobjects": format!("{d}/sobjects/"),
        "search": format!("{d}/search/"),
        "query": format!("{d}/query/"),
        "recent": format!("{d}/recent/"),
        "tooling_soap": format!("{base}/services/Soap/T/{{version}}/{org}"),
        "tooling_rest": format!("{d}/tooling/"),
        "profile": format!("{base}/{user}"),
        "feeds": format!("{d}/chatter/feeds"),
        "groups": format!("{d}/chatter/groups"),
        "users": format!("{d}/chatter/users"),
        "feed_items": format!("{d}/chatter/feed-items"),
        "feed_elements": format!("{d}/chatter/feed-elements"),
        "custom_domain": base,
    })
}

fn user_fields(st: &AppState) -> (String, String, String, String) {
    let org = st.org();
    let mut first = String::new();
    let mut last = String::new();
    let mut email = st.config.username.clone();
    if let Some(u) = org.obj("User")
        && let Some(r) = org.find(u, &org.user_id)
    {
        let def = org.def(u);
        let g = |n: &str| {
            def.field(n)
                .and_then(|c| org.row(u, r).get_str(c))
                .unwrap_or("")
                .to_string()
        };
        first = g("FirstName");
        last = g("LastName");
        let e = g("Email");
        if !e.is_empty() {
            email = e;
        }
    }
    let name = format!("{first} {last}").trim().to_string();
    (first, last, name, email)
}

/// `/services/oauth2/userinfo` body.
pub fn userinfo(st: &AppState) -> Json {
    let base = st.base();
    let (org, user) = ids18(st);
    let (first, last, name, email) = user_fields(st);
    let updated = format_datetime(st.clock.now_ms()).replace(".000+0000", "+0000");
    json!({
        "sub": format!("{base}/id/{org}/{user}"),
        "user_id": user,
        "organization_id": org,
        "preferred_username": st.config.username,
        "nickname": "admin",
        "name": name,
        "email": email,
        "email_verified": true,
        "given_name": first,
        "family_name": last,
        "zoneinfo": "GMT",
        "photos": {"picture": format!("{base}/profilephoto/005/F"), "thumbnail": format!("{base}/profilephoto/005/T")},
        "profile": format!("{base}/{user}"),
        "picture": format!("{base}/profilephoto/005/F"),
        "address": {"country": "US"},
        "is_salesforce_integration_user": false,
        "urls": urls(&base, &org, &user),
        "active": true,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": 0,
        "updated_at": updated,
    })
}

/// `/id/{org}/{user}` body.
pub fn identity(st: &AppState, path: &str, query: &str, headers: &HeaderMap) -> Reply {
    let Some(tok) = request_token(headers, query) else {
        return Reply::json(StatusCode::FORBIDDEN, json!("Bad_OAuth_Token"));
    };
    if !valid(st, &tok) {
        return Reply::json(StatusCode::FORBIDDEN, json!("Bad_OAuth_Token"));
    }
    let segs: Vec<&str> = path.trim_start_matches("/id/").split('/').collect();
    let (org, user) = ids18(st);
    let ok = segs.len() == 2
        && ids::to15(segs[0]) == ids::to15(&org)
        && ids::to15(segs[1]) == ids::to15(&user);
    if !ok {
        return Reply::json(StatusCode::NOT_FOUND, json!("Bad_Id"));
    }
    let base = st.base();
    let (first, last, name, email) = user_fields(st);
    Reply::json(
        StatusCode::OK,
        json!({
            "id": format!("{base}/id/{org}/{user}"),
            "asserted_user": true,
            "user_id": user,
            "organization_id": org,
            "username": st.config.username,
            "nick_name": "admin",
            "display_name": name,
            "email": email,
            "email_verified": true,
            "first_name": first,
            "last_name": last,
            "timezone": "GMT",
            "photos": {"picture": format!("{base}/profilephoto/005/F"), "thumbnail": format!("{base}/profilephoto/005/T")},
            "addr_street": null, "addr_city": null, "addr_state": null, "addr_country": "US", "addr_zip": null,
            "mobile_phone": null,
            "mobile_phone_verified": false,
            "is_lightning_login_user": false,
            "status": {"created_date": null, "body": null},
            "urls": urls(&base, &org, &user),
            "active": true,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "last_modified_date": format_datetime(st.clock.now_ms()),
            "is_app_installed": true,
        }),
    )
}

fn xml_text(body: &str, tag: &str) -> Option<String> {
    let mut from = 0;
    while let Some(pos) = body[from..].find(tag) {
        let start = from + pos;
        from = start + tag.len();
        let before = &body[..start];
        let open = before.rfind('<')?;
        let name = &body[open + 1..start];
        if !(name.is_empty() || (name.ends_with(':') && !name.contains(['/', ' ', '>']))) {
            continue;
        }
        let rest = &body[from..];
        let Some(rest) = rest.strip_prefix('>') else {
            continue;
        };
        let end = rest.find("</")?;
        let raw = &rest[..end];
        return Some(
            raw.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
    }
    None
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn soap_reply(status: StatusCode, xml: String) -> Reply {
    let mut r = Reply::empty(status);
    r.body = crate::http::ReplyBody::Raw("text/xml;charset=UTF-8", xml.into_bytes());
    r
}

/// Legacy SOAP `login()` (`POST /services/Soap/u/XX.X`, spec §2.5): returns a session id
/// usable as a REST bearer token, or an `INVALID_LOGIN` fault.
pub fn soap_login(st: &AppState, version: &str, body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let user = xml_text(&text, "username").unwrap_or_default();
    let pass = xml_text(&text, "password").unwrap_or_default();
    if user != st.config.username || !pass.starts_with(&st.config.password) {
        let msg = "Invalid username, password, security token; or user locked out.";
        return soap_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:sf=\"urn:fault.partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: {msg}</faultstring><detail><sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>{msg}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            ),
        );
    }
    let token = issue(st, "api", false);
    let session = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base = st.base();
    let (org, user_id) = ids18(st);
    let (_, _, name, email) = user_fields(st);
    soap_reply(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"urn:partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{org}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}/{org}</serverUrl><sessionId>{session}</sessionId><userId>{user_id}</userId><userInfo><accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>{org}</organizationId><organizationMultiCurrency>true</organizationMultiCurrency><organizationName>Ferry Emulator</organizationName><profileId>00e000000000000AAA</profileId><roleId xsi:nil=\"true\"/><sessionSecondsValid>{secs}</sessionSecondsValid><userDefaultCurrencyIsoCode xsi:nil=\"true\"/><userEmail>{email}</userEmail><userFullName>{name}</userFullName><userId>{user_id}</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>{uname}</userName><userTimeZone>GMT</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>",
            secs = st.token_ttl().as_secs(),
            email = xml_escape(&email),
            name = xml_escape(&name),
            uname = xml_escape(&st.config.username),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_ignores_prefixes_and_unescapes() {
        let body = "<se:Envelope><se:Body><n1:login><n1:username>a@b.c</n1:username><n1:password>p&amp;w</n1:password></n1:login></se:Body></se:Envelope>";
        assert_eq!(xml_text(body, "username").as_deref(), Some("a@b.c"));
        assert_eq!(xml_text(body, "password").as_deref(), Some("p&w"));
        assert_eq!(
            xml_text("<username>x</username>", "username").as_deref(),
            Some("x")
        );
        assert_eq!(xml_text("<nope/>", "username"), None);
    }

    #[test]
    fn hmac_known_vector() {
        // RFC 4231 test case 2.
        let out = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
