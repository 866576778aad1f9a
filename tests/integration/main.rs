//! Every black-box and storage conformance test, in one test binary: one
//! link of the gateway's dependencies instead of one per file. Each module
//! is one area; `tests/integration/common` is the harness.

mod common;

mod abuse;
mod auth_endpoints;
mod cli;
mod fuzz;
mod hardening;
mod multi_instance;
mod no_secrets;
mod proxy;
mod sessions;
mod signing_keys;
mod sms_providers;
mod storage_outage;
mod store_conformance;
mod tls;
mod websockets;
