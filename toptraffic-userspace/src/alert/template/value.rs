//! The data a template sees: Go values, and the structs Kapacitor 1.5.7
//! hands its alert templates (alert.go: idInfo, messageInfo, detailsInfo).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::alert::event::Level;

/// A Go value as a template sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A nil interface (`<nil>` when printed).
    Nil,
    Bool(bool),
    /// Go's `int` (and `int64`).
    Int(i64),
    /// Go's `float64`.
    Float(f64),
    Str(String),
    /// `time.Time`, always in UTC as Kapacitor's point times are.
    Time(SystemTime),
    Duration(Duration),
    /// `map[string]interface{}`: keys sorted as Go's fmt and json sort them;
    /// a missing key indexes to nil.
    Map(BTreeMap<String, Value>),
    /// `map[string]string` (Kapacitor's `Tags`): a missing key indexes to "".
    StrMap(BTreeMap<String, String>),
    /// A struct: its Go type name (for error messages and `%T`) and its
    /// fields in declaration order. A field with an empty name is an embedded
    /// struct: its fields are promoted (found by `.Field`, written inline by
    /// `json`) but `%v` prints it nested, as Go does.
    Struct(String, Vec<(String, Value)>),
}

impl Value {
    /// The Go type name, as `%T` and fmt's error forms print it.
    pub(super) fn type_name(&self) -> &str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Map(_) => "map[string]interface {}",
            Value::StrMap(_) => "map[string]string",
            Value::Struct(name, _) => name,
        }
    }

    /// text/template's truth (exec.go, isTrue): zero values are false,
    /// structs are true.
    pub(super) fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Time(_) | Value::Struct(..) => true,
            Value::Duration(d) => !d.is_zero(),
            Value::Map(m) => !m.is_empty(),
            Value::StrMap(m) => !m.is_empty(),
        }
    }
}

/// Kapacitor's `serverInfo`, part of every template's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    pub hostname: String,
    pub cluster_id: String,
    pub server_id: String,
}

/// Kapacitor's `.Group` of group-by `tags` (sorted by name, as a BTreeMap
/// holds them): `name=value` joined by `,`.
pub fn group_of(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What an alert's templates can see. The three `*_data` methods build the
/// structs Kapacitor 1.5.7 hands to its templates (alert.go: idInfo,
/// messageInfo embedding idInfo, detailsInfo embedding messageInfo).
#[derive(Debug, Clone, Copy)]
pub struct AlertInfo<'a> {
    /// The measurement (`.Name`).
    pub name: &'a str,
    /// The task, here the rule (`.TaskName`).
    pub task_name: &'a str,
    /// `name=value` of the group-by tags sorted by name, joined by `,`; Kapacitor
    /// writes `nil` when there is no group by.
    pub group: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub server: &'a ServerInfo,
    /// The point's fields; float64 in Go (sums of float fields).
    pub fields: &'a BTreeMap<String, f64>,
    pub level: Level,
    pub time: SystemTime,
    pub duration: Duration,
}

impl AlertInfo<'_> {
    /// `idInfo`: the data of the `id` template.
    pub fn id_data(&self) -> Value {
        Value::Struct("kapacitor.idInfo".into(), self.id_fields())
    }

    /// `messageInfo`: the data of the `message` template, given the rendered id.
    pub fn message_data(&self, id: &str) -> Value {
        Value::Struct("kapacitor.messageInfo".into(), self.message_fields(id))
    }

    fn embedded_message(&self, id: &str) -> (String, Value) {
        (String::new(), self.message_data(id))
    }

    /// `detailsInfo`: the data of the `details` template, given the rendered
    /// id and message.
    pub fn details_data(&self, id: &str, message: &str) -> Value {
        let fields = vec![
            self.embedded_message(id),
            ("Message".into(), Value::Str(message.into())),
        ];
        Value::Struct("kapacitor.detailsInfo".into(), fields)
    }

    fn id_fields(&self) -> Vec<(String, Value)> {
        let server = Value::Struct(
            "kapacitor.serverInfo".into(),
            vec![
                ("Hostname".into(), Value::Str(self.server.hostname.clone())),
                (
                    "ClusterID".into(),
                    Value::Str(self.server.cluster_id.clone()),
                ),
                ("ServerID".into(), Value::Str(self.server.server_id.clone())),
            ],
        );
        vec![
            ("Name".into(), Value::Str(self.name.into())),
            ("TaskName".into(), Value::Str(self.task_name.into())),
            ("Group".into(), Value::Str(self.group.into())),
            ("Tags".into(), Value::StrMap(self.tags.clone())),
            ("ServerInfo".into(), server),
        ]
    }

    fn message_fields(&self, id: &str) -> Vec<(String, Value)> {
        let mut fields = vec![(String::new(), self.id_data())];
        let values = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::Float(*v)))
            .collect();
        fields.extend([
            ("ID".into(), Value::Str(id.into())),
            ("Fields".into(), Value::Map(values)),
            ("Level".into(), Value::Str(self.level.as_str().into())),
            ("Time".into(), Value::Time(self.time)),
            ("Duration".into(), Value::Duration(self.duration)),
        ]);
        fields
    }
}
