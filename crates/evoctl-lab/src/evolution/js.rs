//! What the Evolution stand-in needs of Node's semantics to answer as the real server: `parseInt`,
//! `parseFloat` and `Number` on environment strings, `JSON.parse`'s error messages (V8 11, as
//! body-parser passes them on), `util.inspect`'s layout of the objects the server logs, and
//! `Date.prototype.toString` for log lines.

use serde_json::Value;

/// JavaScript's `StrWhiteSpaceChar` (what `trim` and `parseInt` skip).
fn is_js_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
        || (c != '\u{85}' && c.is_whitespace())
}

/// `Number.parseInt(s)` without a radix; `None` is NaN.
pub fn parse_int(s: &str) -> Option<f64> {
    let s = s.trim_start_matches(is_js_space);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if s.len() >= 2 && (s.starts_with("0x") || s.starts_with("0X")) { (16, &s[2..]) } else { (10, s) };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let value = digits[..end].chars().fold(0f64, |acc, c| acc * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64);
    Some(if negative { -value } else { value })
}

/// The longest prefix of `s` that is a `StrDecimalLiteral` (no sign), as its length in bytes.
fn decimal_prefix(s: &str) -> usize {
    if s.starts_with("Infinity") {
        return "Infinity".len();
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int = digits(&mut i);
    let mut frac = 0;
    if i < bytes.len() && bytes[i] == b'.' {
        let mut j = i + 1;
        frac = digits(&mut j);
        if int > 0 || frac > 0 {
            i = j;
        }
    }
    if int == 0 && frac == 0 {
        return 0;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if digits(&mut j) > 0 {
            i = j;
        }
    }
    i
}

fn parse_decimal(text: &str) -> f64 {
    if text == "Infinity" {
        return f64::INFINITY;
    }
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = if text.starts_with('.') { format!("0{text}") } else { text.to_owned() };
    text.parse().unwrap_or(f64::NAN)
}

/// `Number.parseFloat(s)`; `None` is NaN.
pub fn parse_float(s: &str) -> Option<f64> {
    let s = s.trim_start_matches(is_js_space);
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = decimal_prefix(rest);
    if end == 0 {
        return None;
    }
    let value = parse_decimal(&rest[..end]);
    Some(if negative { -value } else { value })
}

/// `Number(s)` for a string; `None` is NaN.
pub fn number(s: &str) -> Option<f64> {
    let s = s.trim_matches(is_js_space);
    if s.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = s.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            return Some(
                digits.chars().fold(0f64, |acc, c| acc * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64),
            );
        }
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = decimal_prefix(rest);
    if end == 0 || end != rest.len() {
        return None;
    }
    let value = parse_decimal(rest);
    Some(if negative { -value } else { value })
}

/// How JavaScript prints a number (`String(n)`), for the values the stand-in shows.
pub fn number_text(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else if n == n.trunc() && n.abs() < 1e21 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON.parse errors (V8 11, node 20)

/// Where a JSON text first breaks, and V8's message for it.
struct JsonScan<'a> {
    chars: Vec<char>,
    /// UTF-16 offset of each char (V8 positions count code units).
    offsets: Vec<usize>,
    source: &'a str,
    i: usize,
}

enum JsonFault {
    Eos,
    Token(usize),
    Number(usize),
    String(usize),
    At(&'static str, usize),
}

impl<'a> JsonScan<'a> {
    fn new(source: &'a str) -> JsonScan<'a> {
        let chars: Vec<char> = source.chars().collect();
        let mut offsets = Vec::with_capacity(chars.len() + 1);
        let mut at = 0;
        for c in &chars {
            offsets.push(at);
            at += c.len_utf16();
        }
        offsets.push(at);
        JsonScan { chars, offsets, source, i: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.i += 1;
        }
    }

    fn unexpected(&self) -> JsonFault {
        match self.peek() {
            None => JsonFault::Eos,
            Some(_) => JsonFault::Token(self.i),
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonFault> {
        if depth > 4000 {
            return Err(JsonFault::Token(self.i));
        }
        self.skip_ws();
        match self.peek() {
            None => Err(JsonFault::Eos),
            Some('"') => self.string(),
            Some('{') => self.object(depth),
            Some('[') => self.array(depth),
            Some('-' | '0'..='9') => self.number(),
            Some('t') => self.literal("true"),
            Some('f') => self.literal("false"),
            Some('n') => self.literal("null"),
            Some(_) => Err(JsonFault::Token(self.i)),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonFault> {
        for expected in word.chars() {
            if self.peek() != Some(expected) {
                return Err(self.unexpected());
            }
            self.i += 1;
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some('0'..='9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), JsonFault> {
        if self.peek() == Some('-') {
            self.i += 1;
            if !matches!(self.peek(), Some('0'..='9')) {
                return Err(JsonFault::At("No number after minus sign in JSON", self.i));
            }
        }
        if self.peek() == Some('0') {
            self.i += 1;
            if matches!(self.peek(), Some('0'..='9')) {
                return Err(JsonFault::Number(self.i));
            }
        } else {
            self.digits();
        }
        if self.peek() == Some('.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(JsonFault::At("Unterminated fractional number in JSON", self.i));
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(JsonFault::At("Exponent part is missing a number in JSON", self.i));
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), JsonFault> {
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(JsonFault::At("Unterminated string in JSON", self.i)),
                Some('"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some('\\') => {
                    self.i += 1;
                    match self.peek() {
                        None => return Err(JsonFault::At("Unterminated string in JSON", self.i)),
                        Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => self.i += 1,
                        Some('u') => {
                            self.i += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(JsonFault::At("Bad Unicode escape in JSON", self.i));
                                }
                                self.i += 1;
                            }
                        }
                        Some(_) => return Err(JsonFault::At("Bad escaped character in JSON", self.i)),
                    }
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(JsonFault::At("Bad control character in string literal in JSON", self.i));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), JsonFault> {
        self.i += 1;
        self.skip_ws();
        if self.peek() == Some('}') {
            self.i += 1;
            return Ok(());
        }
        let mut first = true;
        loop {
            self.skip_ws();
            match self.peek() {
                Some('"') => self.string()?,
                None if first => return Err(JsonFault::At("Expected property name or '}' in JSON", self.i)),
                None => return Err(JsonFault::At("Expected double-quoted property name in JSON", self.i)),
                Some(_) if first => return Err(JsonFault::At("Expected property name or '}' in JSON", self.i)),
                Some(_) => return Err(JsonFault::At("Expected double-quoted property name in JSON", self.i)),
            }
            first = false;
            self.skip_ws();
            match self.peek() {
                Some(':') => self.i += 1,
                _ => return Err(JsonFault::At("Expected ':' after property name in JSON", self.i)),
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some('}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(JsonFault::At("Expected ',' or '}' after property value in JSON", self.i)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonFault> {
        self.i += 1;
        self.skip_ws();
        if self.peek() == Some(']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(JsonFault::At("Expected ',' or ']' after array element in JSON", self.i)),
            }
        }
    }

    fn message(&self, fault: JsonFault) -> String {
        const CONTEXT: usize = 10;
        let position = |i: usize| self.offsets[i.min(self.offsets.len() - 1)];
        match fault {
            JsonFault::Eos => "Unexpected end of JSON input".into(),
            JsonFault::Number(i) => format!("Unexpected number in JSON at position {}", position(i)),
            JsonFault::String(i) => format!("Unexpected string in JSON at position {}", position(i)),
            JsonFault::At(text, i) => format!("{text} at position {}", position(i)),
            JsonFault::Token(i) => {
                if ["undefined", "NaN", "Infinity", "-Infinity"].contains(&self.source)
                    || self.source.starts_with("[object")
                {
                    return format!("\"{}\" is not valid JSON", self.source);
                }
                let token = self.chars[i];
                let length = self.chars.len();
                let text = |from: usize, to: usize| self.chars[from..to.min(length)].iter().collect::<String>();
                if length <= CONTEXT * 2 + 1 {
                    format!("Unexpected token '{token}', \"{}\" is not valid JSON", self.source)
                } else if i < CONTEXT {
                    format!("Unexpected token '{token}', \"{}\"... is not valid JSON", text(0, i + CONTEXT))
                } else if i < length - CONTEXT {
                    format!(
                        "Unexpected token '{token}', ...\"{}\"... is not valid JSON",
                        text(i - CONTEXT, i + CONTEXT)
                    )
                } else {
                    format!("Unexpected token '{token}', ...\"{}\" is not valid JSON", text(i - CONTEXT, length))
                }
            }
        }
    }
}

/// `JSON.parse(text)`'s error message, or `None` when `text` is valid JSON.
pub fn json_parse_error(text: &str) -> Option<String> {
    let mut scan = JsonScan::new(text);
    let fault = match scan.value(0) {
        Err(fault) => fault,
        Ok(()) => {
            scan.skip_ws();
            scan.peek()?;
            JsonFault::At("Unexpected non-whitespace character after JSON", scan.i)
        }
    };
    // A string where a value may not start reads as V8's "Unexpected string".
    let fault = match fault {
        JsonFault::Token(i) if scan.chars[i] == '"' => JsonFault::String(i),
        other => other,
    };
    Some(scan.message(fault))
}

/// body-parser's `json()` in strict mode: the parse error a body gets, if any. Its first
/// non-blank character must open an object or an array.
pub fn body_parser_error(text: &str) -> Option<String> {
    let first = text.char_indices().find(|(_, c)| !matches!(c, ' ' | '\t' | '\n' | '\r'));
    match first {
        Some((_, '{' | '[')) => json_parse_error(text),
        None => json_parse_error(""),
        Some((index, c)) => {
            // As body-parser does: a copy with everything from that character on made `#`, whose
            // parse error then names the real character.
            let rest = text[index..].chars().count();
            let partial = format!("{}{}", &text[..index], "#".repeat(rest));
            let message = json_parse_error(&partial).unwrap_or_default();
            Some(message.replacen('#', &c.to_string(), 1))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// util.inspect

/// A JavaScript value as the server logs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Js {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// A `Date` (its ISO text).
    Date(String),
    Arr(Vec<Js>),
    Obj(Vec<(String, Js)>),
}

impl Js {
    pub fn str(text: impl Into<String>) -> Js {
        Js::Str(text.into())
    }

    pub fn obj(entries: Vec<(&str, Js)>) -> Js {
        Js::Obj(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// An optional string: the string or `undefined`.
    pub fn opt(text: Option<&str>) -> Js {
        text.map_or(Js::Undefined, Js::str)
    }
}

impl From<&Value> for Js {
    fn from(value: &Value) -> Js {
        match value {
            Value::Null => Js::Null,
            Value::Bool(b) => Js::Bool(*b),
            Value::Number(n) => Js::Num(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => Js::Str(s.clone()),
            Value::Array(items) => Js::Arr(items.iter().map(Js::from).collect()),
            Value::Object(map) => Js::Obj(map.iter().map(|(k, v)| (k.clone(), Js::from(v))).collect()),
        }
    }
}

struct Inspect {
    indentation: usize,
    current_depth: usize,
}

const BREAK_LENGTH: usize = 80;
const COMPACT: usize = 3;
const DEPTH: usize = 2;

/// `util.inspect(value)` with node's defaults (depth 2, breakLength 80, compact 3, no colors).
pub fn inspect(value: &Js) -> String {
    let mut ctx = Inspect { indentation: 0, current_depth: 0 };
    format_value(&mut ctx, value, 0)
}

/// A string as `util.inspect` quotes it.
pub fn quote(text: &str) -> String {
    let quote = if !text.contains('\'') {
        '\''
    } else if !text.contains('"') {
        '"'
    } else if !text.contains('`') && !text.contains("${") {
        '`'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7F => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn format_value(ctx: &mut Inspect, value: &Js, recurse: usize) -> String {
    match value {
        Js::Undefined => "undefined".into(),
        Js::Null => "null".into(),
        Js::Bool(b) => b.to_string(),
        Js::Num(n) => {
            if *n == 0.0 && n.is_sign_negative() {
                "-0".into()
            } else {
                number_text(*n)
            }
        }
        Js::Date(iso) => iso.clone(),
        Js::Str(text) => {
            let length = text.encode_utf16().count();
            if length > 16 && length > BREAK_LENGTH.saturating_sub(ctx.indentation + 4) && text.contains('\n') {
                let mut parts = Vec::new();
                let mut rest = text.as_str();
                while let Some(index) = rest.find('\n') {
                    parts.push(&rest[..=index]);
                    rest = &rest[index + 1..];
                }
                if !rest.is_empty() {
                    parts.push(rest);
                }
                let joiner = format!(" +\n{}  ", " ".repeat(ctx.indentation));
                parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(&joiner)
            } else {
                quote(text)
            }
        }
        Js::Arr(items) => {
            if items.is_empty() {
                return "[]".into();
            }
            if recurse > DEPTH {
                return "[Array]".into();
            }
            let recurse = recurse + 1;
            ctx.current_depth = recurse;
            let mut output = Vec::new();
            for item in items.iter().take(100) {
                ctx.indentation += 2;
                output.push(format_value(ctx, item, recurse));
                ctx.indentation -= 2;
            }
            if items.len() > 100 {
                output.push(format!("... {} more item{}", items.len() - 100, if items.len() > 101 { "s" } else { "" }));
            }
            let numbers = items.iter().all(|i| matches!(i, Js::Num(_)));
            reduce(ctx, output, ('[', ']'), recurse, Some(numbers))
        }
        Js::Obj(entries) => {
            if entries.is_empty() {
                return "{}".into();
            }
            if recurse > DEPTH {
                return "[Object]".into();
            }
            let recurse = recurse + 1;
            ctx.current_depth = recurse;
            let mut output = Vec::new();
            for (key, item) in entries {
                ctx.indentation += 2;
                let text = format_value(ctx, item, recurse);
                ctx.indentation -= 2;
                let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let name = if plain { key.clone() } else { quote(key) };
                output.push(format!("{name}: {text}"));
            }
            reduce(ctx, output, ('{', '}'), recurse, None)
        }
    }
}

/// node's `reduceToSingleString` (with `groupArrayElements` for long arrays).
fn reduce(ctx: &mut Inspect, output: Vec<String>, braces: (char, char), recurse: usize, array: Option<bool>) -> String {
    let entries = output.len();
    let output = match array {
        Some(numbers) if entries > 6 => group(ctx, output, numbers),
        _ => output,
    };
    if ctx.current_depth - recurse < COMPACT && entries == output.len() {
        let start = output.len() + ctx.indentation + 1 + 10;
        let mut total = output.len() + start;
        let fits = total + output.len() <= BREAK_LENGTH
            && output.iter().all(|entry| {
                total += entry.chars().count();
                total <= BREAK_LENGTH
            });
        if fits {
            let joined = output.join(", ");
            if !joined.contains('\n') {
                return format!("{} {joined} {}", braces.0, braces.1);
            }
        }
    }
    let indentation = format!("\n{}", " ".repeat(ctx.indentation));
    format!("{}{indentation}  {}{indentation}{}", braces.0, output.join(&format!(",{indentation}  ")), braces.1)
}

fn group(ctx: &Inspect, output: Vec<String>, numbers: bool) -> Vec<String> {
    let mut total = 0usize;
    let mut max = 0usize;
    let counted = if output.last().is_some_and(|l| l.starts_with("... ")) { output.len() - 1 } else { output.len() };
    let lengths: Vec<usize> = output.iter().map(|o| o.chars().count()).collect();
    for &len in &lengths[..counted] {
        total += len + 2;
        max = max.max(len);
    }
    let actual_max = max + 2;
    if actual_max * 3 + ctx.indentation < BREAK_LENGTH && (total as f64 / actual_max as f64 > 5.0 || max <= 6) {
        let average_bias = (actual_max as f64 - total as f64 / output.len() as f64).sqrt();
        let biased_max = (actual_max as f64 - 3.0 - average_bias).max(1.0);
        let columns = ((2.5 * biased_max * counted as f64).sqrt() / biased_max)
            .round()
            .min(((BREAK_LENGTH - ctx.indentation) / actual_max) as f64)
            .min((COMPACT * 4) as f64)
            .min(15.0) as usize;
        if columns <= 1 {
            return output;
        }
        let mut widths = Vec::new();
        for i in 0..columns {
            let mut width = 0;
            let mut j = i;
            while j < counted {
                width = width.max(lengths[j]);
                j += columns;
            }
            widths.push(width + 2);
        }
        let mut grouped = Vec::new();
        let mut i = 0;
        while i < counted {
            let end = (i + columns).min(counted);
            let mut line = String::new();
            for j in i..end - 1 {
                let cell = format!("{}, ", output[j]);
                line.push_str(&pad(&cell, widths[j - i], numbers));
            }
            let last = &output[end - 1];
            if numbers {
                line.push_str(&pad(last, widths[end - 1 - i] - 2, true));
            } else {
                line.push_str(last);
            }
            grouped.push(line);
            i += columns;
        }
        if counted < output.len() {
            grouped.push(output[counted].clone());
        }
        return grouped;
    }
    output
}

fn pad(text: &str, width: usize, start: bool) -> String {
    let len = text.chars().count();
    if len >= width {
        return text.to_owned();
    }
    let fill = " ".repeat(width - len);
    if start { format!("{fill}{text}") } else { format!("{text}{fill}") }
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Days since 1970-01-01 to (year, month 1-12, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `new Date(ms).toString()` without its ` GMT…` tail, at `offset_minutes` from UTC (what
/// Evolution's logger prints: `Tue Dec 01 2026 20:45:27`).
pub fn date_string(ms: u64, offset_minutes: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let local = ms as i64 / 1000 + offset_minutes * 60;
    let days = local.div_euclid(86_400);
    let seconds = local.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    format!(
        "{} {} {day:02} {year} {:02}:{:02}:{:02}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_reads_as_node() {
        assert_eq!(parse_int("30"), Some(30.0));
        assert_eq!(parse_int(" 5m"), Some(5.0));
        assert_eq!(parse_int("10min"), Some(10.0));
        assert_eq!(parse_int("0x10"), Some(16.0));
        assert_eq!(parse_int("-7"), Some(-7.0));
        assert_eq!(parse_int("1e3"), Some(1.0));
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int("false"), None);
    }

    #[test]
    fn parse_float_and_number_read_as_node() {
        assert_eq!(parse_float("0.2"), Some(0.2));
        assert_eq!(parse_float(".5x"), Some(0.5));
        assert_eq!(parse_float("1e-1z"), Some(0.1));
        assert_eq!(parse_float("x"), None);
        assert_eq!(number(" 401 "), Some(401.0));
        assert_eq!(number(""), Some(0.0));
        assert_eq!(number("0x1F"), Some(31.0));
        assert_eq!(number("4o1"), None);
        assert_eq!(number("Infinity"), Some(f64::INFINITY));
        assert_eq!(number("inf"), None);
    }

    #[test]
    fn json_errors_read_as_v8() {
        assert_eq!(
            json_parse_error("{\"webhook\": {").as_deref(),
            Some("Expected property name or '}' in JSON at position 13")
        );
        assert_eq!(json_parse_error("").as_deref(), Some("Unexpected end of JSON input"));
        assert_eq!(json_parse_error("{\"a\":").as_deref(), Some("Unexpected end of JSON input"));
        assert_eq!(
            json_parse_error("[1").as_deref(),
            Some("Expected ',' or ']' after array element in JSON at position 2")
        );
        assert_eq!(
            json_parse_error("{\"a\":1,}").as_deref(),
            Some("Expected double-quoted property name in JSON at position 7")
        );
        assert_eq!(
            json_parse_error("{\"a\" 1}").as_deref(),
            Some("Expected ':' after property name in JSON at position 5")
        );
        assert_eq!(
            json_parse_error("[1 2]").as_deref(),
            Some("Expected ',' or ']' after array element in JSON at position 3")
        );
        assert_eq!(
            json_parse_error("{} x").as_deref(),
            Some("Unexpected non-whitespace character after JSON at position 3")
        );
        assert_eq!(
            json_parse_error("{\"a\": tru}").as_deref(),
            Some("Unexpected token '}', \"{\"a\": tru}\" is not valid JSON")
        );
        assert_eq!(json_parse_error("{\"a\":1}"), None);
        assert_eq!(body_parser_error("abc").as_deref(), Some("Unexpected token 'a', \"###\" is not valid JSON"));
        assert_eq!(body_parser_error(" {\"a\":1}"), None);
    }

    #[test]
    fn inspect_lays_out_as_node() {
        let data = Js::obj(vec![
            ("instanceName", Js::str("alinhou-delete-401")),
            ("instanceId", Js::str("30036968-3977-4c68-b47b-41ae1b2c76be")),
        ]);
        let value = Js::obj(vec![
            ("local", Js::str("ChannelStartupService.sendData-Webhook")),
            ("data", data),
            ("sender", Js::Undefined),
            ("nothing", Js::Null),
            ("statusCode", Js::Num(401.0)),
        ]);
        assert_eq!(
            inspect(&value),
            "{\n  local: 'ChannelStartupService.sendData-Webhook',\n  data: {\n    instanceName: 'alinhou-delete-401',\n    instanceId: '30036968-3977-4c68-b47b-41ae1b2c76be'\n  },\n  sender: undefined,\n  nothing: null,\n  statusCode: 401\n}"
        );
        assert_eq!(inspect(&Js::obj(vec![("a", Js::Num(1.0)), ("b", Js::str("x"))])), "{ a: 1, b: 'x' }");
        assert_eq!(quote("it's"), "\"it's\"");
        let stack = Js::obj(vec![(
            "stack",
            Js::str(
                "AxiosError: Request failed with status code 401\n    at settle (/evolution/node_modules/axios/lib/core/settle.js:19:12)",
            ),
        )]);
        assert_eq!(
            inspect(&stack),
            "{\n  stack: 'AxiosError: Request failed with status code 401\\n' +\n    '    at settle (/evolution/node_modules/axios/lib/core/settle.js:19:12)'\n}"
        );
    }

    #[test]
    fn dates_print_as_node() {
        assert_eq!(date_string(1_796_157_927_000, 0), "Tue Dec 01 2026 20:45:27");
        assert_eq!(date_string(1_796_157_927_000, -180), "Tue Dec 01 2026 17:45:27");
    }
}
