//! The two request schemas of Evolution 2.3.7 that the stand-in serves (`webhookSchema` of
//! `webhook.schema.ts`, `instanceSchema` of `instance.schema.ts`), checked the way
//! jsonschema@1.5.0 checks them, with its error texts: keywords in the schema's own order, one
//! error per failure (every bad index of an array), each reported as the keyword's
//! `description` when it has one, else its `stack` with the first `instance.` removed; the
//! router then wraps the list once more (`[[…]]`).
//!
//! `isNotEmpty(…names)` is `if: {propertyNames: {enum: names}}, then: {properties: {name:
//! {minLength: 1, description: 'The "name" cannot be empty'}}}`: it applies only when the
//! object has no key other than those names.

use serde_json::Value;

/// The subset of JSON Schema the two schemas use.
#[derive(Debug, Clone)]
pub enum Keyword {
    Type(&'static str),
    Properties(Vec<(&'static str, Vec<Keyword>)>),
    Required(Vec<&'static str>),
    Enum(Vec<&'static str>),
    /// The pattern as written in the schema, and its check.
    Pattern(&'static str, fn(&str) -> bool),
    MinItems(usize),
    Items(Vec<Keyword>),
    MinLength(usize),
    Description(&'static str),
    /// `if: {propertyNames: {enum: names}}, then: {properties: …}`.
    IfOnlyKeys(Vec<&'static str>, Vec<(&'static str, Vec<Keyword>)>),
}

/// The webhook event enum of Evolution 2.3.7 (`event.controller.ts:138-170`), in its order: what
/// `webhookSchema` accepts and what "all events" is stored as. The lab's own copy from the real
/// source, not evoctl's, so a wrong name in evoctl fails a test instead of being shared.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
];

/// The 26 event names `instanceSchema` lists for its flat `*Events` keys: the webhook enum
/// without its last five (REMOVE_INSTANCE, LOGOUT_INSTANCE, INSTANCE_CREATE, INSTANCE_DELETE,
/// STATUS_INSTANCE).
const FLAT_EVENTS: &[&str] = WEBHOOK_EVENTS.split_at(26).0;

/// `^\d+[\.@\w-]+` with the `u` flag (ASCII `\d` and `\w`), searched as `String.match` does.
fn number_pattern(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    // At least one digit, then at least one of [.@A-Za-z0-9_-] (backtracking over the digits).
    digits >= 1
        && (digits >= 2
            || text
                .as_bytes()
                .get(digits)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-')))
}

fn is_not_empty(names: &[&'static str]) -> Keyword {
    let properties = names
        .iter()
        .map(|name| {
            let description: &'static str = match *name {
                "instanceName" => "The \"instanceName\" cannot be empty",
                "enabled" => "The \"enabled\" cannot be empty",
                "url" => "The \"url\" cannot be empty",
                _ => "cannot be empty",
            };
            (*name, vec![Keyword::MinLength(1), Keyword::Description(description)])
        })
        .collect();
    Keyword::IfOnlyKeys(names.to_vec(), properties)
}

fn typed(kind: &'static str) -> Vec<Keyword> {
    vec![Keyword::Type(kind)]
}

fn events(list: &[&'static str]) -> Vec<Keyword> {
    vec![
        Keyword::Type("array"),
        Keyword::MinItems(0),
        Keyword::Items(vec![Keyword::Type("string"), Keyword::Enum(list.to_vec())]),
    ]
}

/// `webhookSchema`.
pub fn webhook_schema() -> Vec<Keyword> {
    let webhook = vec![
        Keyword::Type("object"),
        Keyword::Properties(vec![
            ("enabled", typed("boolean")),
            ("url", typed("string")),
            ("headers", typed("object")),
            ("byEvents", typed("boolean")),
            ("base64", typed("boolean")),
            ("events", events(WEBHOOK_EVENTS)),
        ]),
        Keyword::Required(vec!["enabled", "url"]),
        is_not_empty(&["enabled", "url"]),
    ];
    vec![Keyword::Type("object"), Keyword::Properties(vec![("webhook", webhook)]), Keyword::Required(vec!["webhook"])]
}

/// `instanceSchema`.
pub fn instance_schema() -> Vec<Keyword> {
    let mut properties: Vec<(&'static str, Vec<Keyword>)> = vec![
        ("instanceName", typed("string")),
        ("token", typed("string")),
        ("number", vec![Keyword::Type("string"), Keyword::Pattern("^\\d+[\\.@\\w-]+", number_pattern)]),
        ("businessId", typed("string")),
        ("qrcode", typed("boolean")),
        (
            "Integration",
            vec![Keyword::Type("string"), Keyword::Enum(vec!["WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION"])],
        ),
    ];
    properties.push(("rejectCall", typed("boolean")));
    properties.push(("msgCall", typed("string")));
    for key in ["groupsIgnore", "alwaysOnline", "readMessages", "readStatus", "syncFullHistory"] {
        properties.push((key, typed("boolean")));
    }
    properties.push(("wavoipToken", typed("string")));
    for key in ["proxyHost", "proxyPort", "proxyProtocol", "proxyUsername", "proxyPassword", "webhookUrl"] {
        properties.push((key, typed("string")));
    }
    properties.push(("webhookByEvents", typed("boolean")));
    properties.push(("webhookBase64", typed("boolean")));
    properties.push(("webhookEvents", events(FLAT_EVENTS)));
    for (enabled, list) in
        [("rabbitmqEnabled", "rabbitmqEvents"), ("natsEnabled", "natsEvents"), ("sqsEnabled", "sqsEvents")]
    {
        properties.push((enabled, typed("boolean")));
        properties.push((list, events(FLAT_EVENTS)));
    }
    for key in ["chatwootAccountId", "chatwootToken", "chatwootUrl"] {
        properties.push((key, typed("string")));
    }
    for key in
        ["chatwootSignMsg", "chatwootReopenConversation", "chatwootConversationPending", "chatwootImportContacts"]
    {
        properties.push((key, typed("boolean")));
    }
    properties.push(("chatwootNameInbox", typed("string")));
    properties.push(("chatwootMergeBrazilContacts", typed("boolean")));
    properties.push(("chatwootImportMessages", typed("boolean")));
    properties.push(("chatwootDaysLimitImportMessages", typed("number")));
    vec![Keyword::Type("object"), Keyword::Properties(properties), is_not_empty(&["instanceName"])]
}

/// jsonschema's `makeSuffix`: how a key or index extends a property path.
fn suffix(key: &str) -> String {
    let starts_with_digit = key.chars().next().is_some_and(|c| c.is_ascii_digit());
    if !key.contains(['.', '[', ']']) && !key.chars().any(char::is_whitespace) && !starts_with_digit {
        format!(".{key}")
    } else if !key.is_empty() && key.chars().all(|c| c.is_ascii_digit()) {
        format!("[{key}]")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.as_f64().is_some_and(f64::is_finite),
        "null" => value.is_null(),
        _ => true,
    }
}

/// Validate `value` (the request body; `None` where a key is absent) and return the messages the
/// router reports, in order; empty when valid.
pub fn validate(schema: &[Keyword], value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, Some(value), "instance", &mut errors);
    errors
}

fn check(schema: &[Keyword], value: Option<&Value>, path: &str, errors: &mut Vec<String>) {
    let Some(value) = value else { return };
    let description = schema.iter().find_map(|k| match k {
        Keyword::Description(text) => Some(*text),
        _ => None,
    });
    let fail = |errors: &mut Vec<String>, message: String| {
        let text = match description {
            Some(text) => text.to_owned(),
            None => format!("{path} {message}").replacen("instance.", "", 1),
        };
        errors.push(text);
    };
    for keyword in schema {
        match keyword {
            Keyword::Type(kind) => {
                if !type_matches(kind, value) {
                    fail(errors, format!("is not of a type(s) {kind}"));
                }
            }
            Keyword::Enum(list) => {
                if !value.as_str().is_some_and(|s| list.contains(&s)) {
                    fail(errors, format!("is not one of enum values: {}", list.join(",")));
                }
            }
            Keyword::Pattern(text, matches) => {
                if let Some(s) = value.as_str()
                    && !matches(s)
                {
                    fail(errors, format!("does not match pattern {}", Value::String((*text).to_owned())));
                }
            }
            Keyword::MinLength(min) => {
                if let Some(s) = value.as_str()
                    && s.chars().count() < *min
                {
                    fail(errors, format!("does not meet minimum length of {min}"));
                }
            }
            Keyword::MinItems(min) => {
                if let Some(items) = value.as_array()
                    && items.len() < *min
                {
                    fail(errors, format!("does not meet minimum length of {min}"));
                }
            }
            Keyword::Required(keys) => {
                if let Some(object) = value.as_object() {
                    for key in keys {
                        if !object.contains_key(*key) {
                            fail(errors, format!("requires property {}", Value::String((*key).to_owned())));
                        }
                    }
                }
            }
            Keyword::Description(_) | Keyword::Items(_) | Keyword::Properties(_) | Keyword::IfOnlyKeys(..) => {}
        }
        // Keywords that descend report their own errors (with the child's description).
        match keyword {
            Keyword::Properties(properties) => {
                if let Some(object) = value.as_object() {
                    for (key, sub) in properties {
                        check(sub, object.get(*key), &format!("{path}{}", suffix(key)), errors);
                    }
                }
            }
            Keyword::Items(sub) => {
                if let Some(items) = value.as_array() {
                    for (index, item) in items.iter().enumerate() {
                        check(sub, Some(item), &format!("{path}[{index}]"), errors);
                    }
                }
            }
            Keyword::IfOnlyKeys(names, properties) => {
                let only_those = value.as_object().is_none_or(|o| o.keys().all(|k| names.contains(&k.as_str())));
                if only_those && let Some(object) = value.as_object() {
                    for (key, sub) in properties {
                        check(sub, object.get(*key), &format!("{path}{}", suffix(key)), errors);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_messages_are_the_real_ones() {
        let schema = webhook_schema();
        assert_eq!(validate(&schema, &json!({})), ["instance requires property \"webhook\""]);
        assert_eq!(
            validate(&schema, &json!({"webhook": {"enabled": true, "events": ["MESSAGES_UPSERT"]}})),
            ["webhook requires property \"url\""]
        );
        assert_eq!(
            validate(&schema, &json!({"webhook": {"enabled": true, "url": ""}})),
            ["The \"url\" cannot be empty"]
        );
        assert!(validate(&schema, &json!({"webhook": {"enabled": true, "url": "", "events": []}})).is_empty());
        let bad = validate(
            &schema,
            &json!({"webhook": {"enabled": true, "url": "x", "events": ["MESSAGE_UPSERT", "MESSAGES_UPSERT", "FOO"]}}),
        );
        assert_eq!(bad.len(), 2);
        assert!(bad[0].starts_with("webhook.events[0] is not one of enum values: APPLICATION_STARTUP,QRCODE_UPDATED,"));
        assert!(bad[1].starts_with("webhook.events[2] is not one of enum values: "));
        assert!(bad[1].ends_with(",INSTANCE_DELETE,STATUS_INSTANCE"));
        assert_eq!(
            validate(&schema, &json!({"webhook": {"enabled": "yes", "url": 5, "headers": [], "byEvents": 1}})),
            [
                "webhook.enabled is not of a type(s) boolean",
                "webhook.url is not of a type(s) string",
                "webhook.headers is not of a type(s) object",
                "webhook.byEvents is not of a type(s) boolean"
            ]
        );
        assert_eq!(validate(&schema, &json!({"webhook": null})), ["webhook is not of a type(s) object"]);
    }

    #[test]
    fn instance_messages_are_the_real_ones() {
        let schema = instance_schema();
        assert!(validate(&schema, &json!({"instanceName": "", "integration": "WHATSAPP-BAILEYS"})).is_empty());
        assert_eq!(validate(&schema, &json!({"instanceName": ""})), ["The \"instanceName\" cannot be empty"]);
        assert_eq!(
            validate(&schema, &json!({"instanceName": "x", "number": "+5511"})),
            ["number does not match pattern \"^\\\\d+[\\\\.@\\\\w-]+\""]
        );
        assert!(validate(&schema, &json!({"number": "5511987654321"})).is_empty());
        assert_eq!(validate(&schema, &json!({"number": "5"})).len(), 1);
        assert_eq!(validate(&schema, &json!({"qrcode": "yes"})), ["qrcode is not of a type(s) boolean"]);
        assert!(validate(&schema, &json!({"integration": "FOO"})).is_empty(), "`Integration` is never checked");
    }
}
