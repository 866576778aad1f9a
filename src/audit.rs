//! The audit log (`server.audit_log`): one JSON object per line per security
//! event, with `ts`, `event`, `request_id` and `ip`, and the masked mobile,
//! user id, session id, limit or reason where known. Events are built by
//! typed setters only, so no OTP, token or secret can be handed to one.

use std::io::Write;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::config::AuditLog;
use crate::context::RequestContext;
use crate::limits::Limit;
use crate::mobile::masked;

enum Sink {
    Off,
    Stderr,
    File(std::fs::File),
}

pub struct Audit {
    sink: Sink,
}

impl Audit {
    /// Opens the configured sink; a file is created owner-only and appended to.
    pub fn open(config: &AuditLog) -> Result<Self, String> {
        let sink = match config {
            AuditLog::Off => Sink::Off,
            AuditLog::Stderr => Sink::Stderr,
            AuditLog::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Sink::File(options.open(path).map_err(|e| {
                    format!("server.audit_log: cannot open {}: {e}", path.display())
                })?)
            }
        };
        Ok(Self { sink })
    }

    /// Starts an event of the request `ctx`; nothing is built when the log is off.
    pub fn event(&self, event: &'static str, ctx: &RequestContext) -> Event<'_> {
        let fields = match self.sink {
            Sink::Off => None,
            _ => {
                let mut fields = Map::new();
                let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                fields.insert("ts".into(), ts.to_string().into());
                fields.insert("event".into(), event.into());
                fields.insert("request_id".into(), ctx.request_id().into());
                fields.insert(
                    "ip".into(),
                    ctx.client_ip
                        .as_ref()
                        .map_or(Value::Null, |ip: &IpAddr| ip.to_string().into()),
                );
                Some(fields)
            }
        };
        Event {
            audit: self,
            fields,
        }
    }

    fn write(&self, line: &[u8]) {
        let written = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stderr => std::io::stderr().lock().write_all(line),
            // One write of one line to an append-only file: lines never interleave.
            Sink::File(file) => (&*file).write_all(line),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "audit event not written");
        }
    }
}

/// An event being built; written by `emit`.
#[must_use = "an event is written only by emit()"]
pub struct Event<'a> {
    audit: &'a Audit,
    fields: Option<Map<String, Value>>,
}

impl Event<'_> {
    fn set(mut self, key: &'static str, value: Value) -> Self {
        if let Some(fields) = &mut self.fields {
            fields.insert(key.into(), value);
        }
        self
    }

    /// The mobile, masked to its last four digits.
    pub fn mobile(self, mobile: &str) -> Self {
        let masked = masked(mobile);
        self.set("mobile", masked.into())
    }

    pub fn user(self, user_id: u64) -> Self {
        self.set("user_id", user_id.into())
    }

    pub fn session(self, session_id: &str) -> Self {
        self.set("session_id", session_id.into())
    }

    pub fn limit(self, limit: Limit) -> Self {
        self.set("limit", limit.as_str().into())
    }

    /// A fixed word from the code (`expired`, `register`, ...), never client input.
    pub fn detail(self, key: &'static str, word: &'static str) -> Self {
        self.set(key, word.into())
    }

    pub fn emit(self) {
        let Some(fields) = self.fields else { return };
        let mut line = serde_json::to_vec(&fields).expect("JSON values serialize");
        line.push(b'\n');
        self.audit.write(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            peer: Some("10.0.0.1".parse().unwrap()),
            client_ip: Some("192.0.2.7".parse().unwrap()),
            request_id: http::HeaderValue::from_static("req-1"),
        }
    }

    #[test]
    fn events_are_json_lines_with_masked_mobiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&AuditLog::File(path.clone())).unwrap();
        audit
            .event("limit_hit", &ctx())
            .mobile("+15550001234")
            .limit(Limit::SmsPerIp)
            .emit();
        audit.event("login", &ctx()).user(7).session("s1").emit();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "limit_hit");
        assert_eq!(lines[0]["mobile"], "***1234");
        assert_eq!(lines[0]["limit"], "sms_per_ip");
        assert_eq!(lines[0]["ip"], "192.0.2.7");
        assert_eq!(lines[0]["request_id"], "req-1");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["user_id"], 7);
        assert_eq!(lines[1]["session_id"], "s1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
