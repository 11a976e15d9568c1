//! Sign-in with the Microsoft identity platform (OpenID Connect, code flow
//! with PKCE), the redirect URI, and sign-out.

pub mod oidc;
pub mod refresh;
pub mod routes;
