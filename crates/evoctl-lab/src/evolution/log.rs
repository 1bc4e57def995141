//! Log lines as Evolution 2.3.7's `Logger` writes them (`logger.config.ts`): with `LOG_COLOR`
//! off, `[Evolution API] [instance] PID - Tue Dec 01 2026 20:45:27   LOG  [Context] [object] {…}`
//! (an object as `util.inspect` lays it out); with it on (the image's default), ANSI colours,
//! the version and the object on its own `console.log`. A level is written only when
//! `LOG_LEVEL` lists it. Lines are queued with their time and cut at newlines, as CloudWatch
//! receives a container's stdout: one event per line.

use super::env::EvoConfig;
use super::js::{self, Js};
use std::sync::Mutex;

/// One line of output, as one log event.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub ms: u64,
    pub message: String,
}

/// The logger's levels (`Type` in logger.config.ts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Log,
    Info,
    Warn,
    Error,
    Verbose,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Log => "LOG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Verbose => "VERBOSE",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Level::Log => "\x1b[32m",
            Level::Info => "\x1b[34m",
            Level::Warn => "\x1b[33m",
            Level::Error => "\x1b[31m",
            Level::Verbose => "\x1b[37m",
        }
    }

    fn background(self) -> &'static str {
        match self {
            Level::Log => "\x1b[42m",
            Level::Info => "\x1b[44m",
            Level::Warn => "\x1b[43m",
            Level::Error => "\x1b[41m",
            Level::Verbose => "\x1b[47m",
        }
    }
}

const BRIGHT: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// One process's logger: its settings and the lines waiting to be collected.
pub struct Logger {
    pid: u32,
    color: bool,
    levels: Vec<String>,
    tz_offset_minutes: i64,
    queue: Mutex<Vec<LogLine>>,
}

impl Logger {
    pub fn new(config: &EvoConfig, pid: u32) -> Logger {
        Logger {
            pid,
            color: config.log_color,
            levels: config.log_levels.clone(),
            tz_offset_minutes: config.tz_offset_minutes,
            queue: Mutex::new(Vec::new()),
        }
    }

    /// Whether `LOG_LEVEL` lists this name (also `WEBHOOKS`, which gates the per-send dump).
    pub fn enabled(&self, name: &str) -> bool {
        self.levels.iter().any(|l| l == name)
    }

    /// `new Logger(context)` (with `setInstance` when `instance` is given) `.level(value)`.
    pub fn write(&self, level: Level, context: &str, instance: Option<&str>, value: &Js) {
        if !self.enabled(level.name()) {
            return;
        }
        let now = crate::state::now_ms();
        let date = js::date_string(now, self.tz_offset_minutes);
        let kind = match value {
            Js::Undefined => "undefined",
            Js::Bool(_) => "boolean",
            Js::Num(_) => "number",
            Js::Str(_) => "string",
            _ => "object",
        };
        let shown = match value {
            Js::Str(text) => text.clone(),
            other => js::inspect(other),
        };
        let instance = instance.map(|i| format!("[{i}]")).unwrap_or_default();
        let text = if self.color {
            let c = level.color();
            let head = [
                format!("{BRIGHT}{c}[Evolution API]{RESET}"),
                format!("{BRIGHT}{c}"),
                instance,
                format!("{BRIGHT}{c}"),
                "v2.3.7".into(),
                format!("{BRIGHT}{c}"),
                self.pid.to_string(),
                RESET.into(),
                format!("{BRIGHT}{c}"),
                "-".into(),
                format!("{BRIGHT}\x1b[37m"),
                format!("{date}  "),
                RESET.into(),
                format!("{c}{}{BRIGHT}", level.background()),
                format!("{} {RESET}", level.name()),
                format!("\x1b[33m{BRIGHT}"),
                format!("[{context}]{RESET}"),
                format!("{c}{BRIGHT}"),
                format!("[{kind}]{RESET}"),
                c.into(),
                if kind == "object" { String::new() } else { shown.clone() },
                RESET.into(),
            ]
            .join(" ");
            if kind == "object" { format!("{head}\n{shown} \n") } else { head }
        } else {
            [
                "[Evolution API]".to_owned(),
                instance,
                self.pid.to_string(),
                "-".into(),
                format!("{date}  "),
                format!("{} ", level.name()),
                format!("[{context}]"),
                format!("[{kind}]"),
                shown,
            ]
            .join(" ")
        };
        self.push_lines(now, &text);
    }

    /// A line written as is (Baileys' pino JSON).
    pub fn raw(&self, line: &str) {
        self.push_lines(crate::state::now_ms(), line);
    }

    fn push_lines(&self, ms: u64, text: &str) {
        let mut queue = self.queue.lock().expect("lab lock");
        for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
            queue.push(LogLine { ms, message: line.to_owned() });
        }
    }

    /// Take the lines written since the last call.
    pub fn drain(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.queue.lock().expect("lab lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger(color: &str) -> Logger {
        let env = [("LOG_COLOR", color), ("TZ", "UTC")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Logger::new(&EvoConfig::from_env(&env), 19095)
    }

    #[test]
    fn plain_lines_read_as_the_fixture() {
        let log = logger("false");
        log.write(Level::Warn, "WAMonitoringService", None, &Js::str("Instance \"x\" - REMOVED"));
        log.write(
            Level::Error,
            "WebhookController",
            None,
            &Js::obj(vec![
                ("local", Js::str("ChannelStartupService.sendData-Webhook")),
                ("statusCode", Js::Num(401.0)),
                ("url", Js::str("http://127.0.0.1:18999/hook/instance-delete")),
            ]),
        );
        log.write(Level::Log, "WebhookController", None, &Js::obj(vec![("a", Js::Num(1.0))]));
        let lines: Vec<String> = log.drain().into_iter().map(|l| l.message).collect();
        assert!(lines[0].starts_with("[Evolution API]  19095 - "), "{}", lines[0]);
        assert!(lines[0].ends_with("   WARN  [WAMonitoringService] [string] Instance \"x\" - REMOVED"), "{}", lines[0]);
        assert!(lines[1].ends_with("   ERROR  [WebhookController] [object] {"), "{}", lines[1]);
        assert_eq!(lines[2], "  local: 'ChannelStartupService.sendData-Webhook',");
        assert_eq!(lines[3], "  statusCode: 401,");
        assert_eq!(lines[4], "  url: 'http://127.0.0.1:18999/hook/instance-delete'");
        assert_eq!(lines[5], "}");
        assert!(
            lines[6].ends_with("   LOG  [WebhookController] [object] { a: 1 }"),
            "short objects stay on one line: {}",
            lines[6]
        );
    }

    #[test]
    fn colour_lines_keep_the_object_dump_plain() {
        let log = logger("true");
        log.write(
            Level::Error,
            "WebhookController",
            None,
            &Js::obj(vec![
                ("message", Js::str("Tentativa 1/10 falhou: Request failed with status code 500")),
                ("statusCode", Js::Num(500.0)),
                ("url", Js::str("http://127.0.0.1:18999/hook/connection-update")),
            ]),
        );
        let lines: Vec<String> = log.drain().into_iter().map(|l| l.message).collect();
        assert!(lines[0].contains("v2.3.7") && lines[0].contains("[WebhookController]"), "{:?}", lines[0]);
        assert_eq!(lines[1], "{");
        assert_eq!(lines[2], "  message: 'Tentativa 1/10 falhou: Request failed with status code 500',");
        assert_eq!(lines.last().map(String::as_str), Some("} "));
    }
}
