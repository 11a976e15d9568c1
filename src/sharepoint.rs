//! The SharePoint user's title: `{site}/_api/web/currentuser`, read once at
//! sign-in with a token for the SharePoint host obtained from the refresh
//! token. Only the result is kept; the SharePoint token is dropped.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::read_limited;

/// What the home page shows: the SharePoint title and email, or why not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum SharePointUser {
    Found {
        title: String,
        email: Option<String>,
    },
    Unavailable {
        reason: String,
    },
}

#[derive(Deserialize)]
struct CurrentUser {
    #[serde(rename = "Title")]
    title: Option<String>,
    #[serde(rename = "Email")]
    email: Option<String>,
}

/// The delegated scope for a site's host: one token per resource on the v2.0
/// endpoint, so SharePoint needs its own (`https://{host}/AllSites.Read`).
pub fn scope_for(site: &Url) -> String {
    format!("{}/AllSites.Read", site.origin().ascii_serialization())
}

/// Calls `currentuser` with `token`; every failure becomes a one-line reason.
pub async fn current_user(http: &reqwest::Client, site: &Url, token: &str) -> SharePointUser {
    let url = format!(
        "{}/_api/web/currentuser",
        site.as_str().trim_end_matches('/')
    );
    let unavailable = |reason: &str| SharePointUser::Unavailable {
        reason: reason.to_owned(),
    };
    let request = http
        .get(&url)
        .bearer_auth(token)
        .header(ACCEPT, "application/json;odata=nometadata");
    let response = match crate::metrics::send(crate::metrics::Service::SharePoint, request).await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return unavailable("SharePoint did not answer in time."),
        Err(e) => {
            tracing::warn!(site = %site, error = %e, "SharePoint unreachable");
            return unavailable("SharePoint could not be reached.");
        }
    };
    match response.status() {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::info!(site = %site, status = %response.status(), "SharePoint refused the token");
            return unavailable(
                "SharePoint refused access to the site (you may not be a member of it).",
            );
        }
        StatusCode::NOT_FOUND => return unavailable("The SharePoint site was not found."),
        other => {
            tracing::warn!(site = %site, status = %other, "SharePoint failed");
            return unavailable("SharePoint answered with an error.");
        }
    }
    let parsed = match read_limited(response, 256 * 1024).await {
        Ok(body) => serde_json::from_slice::<CurrentUser>(&body).ok(),
        Err(e) if e.is_timeout() => return unavailable("SharePoint did not answer in time."),
        Err(_) => None,
    };
    match parsed {
        Some(CurrentUser {
            title: Some(title),
            email,
        }) if !title.trim().is_empty() => SharePointUser::Found {
            title,
            email: email.filter(|e| !e.is_empty()),
        },
        _ => unavailable("SharePoint sent an answer we could not read."),
    }
}

/// The reason shown when the refresh-token exchange for SharePoint is refused.
pub fn token_refused(error: &str) -> SharePointUser {
    let reason = match error {
        "invalid_grant" | "consent_required" | "interaction_required" => {
            "SharePoint access has not been consented to (the app needs the delegated permission AllSites.Read)."
        }
        _ => "A token for SharePoint could not be obtained.",
    };
    SharePointUser::Unavailable {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_is_the_sites_host() {
        let site = Url::parse("https://contoso.sharepoint.com/sites/team").unwrap();
        assert_eq!(
            scope_for(&site),
            "https://contoso.sharepoint.com/AllSites.Read"
        );
    }
}
