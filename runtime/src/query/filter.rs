//! Filters of a query: conditions on dimension values, read into the
//! engine's [`Filter`]. See [`validate`](super::validate) for the forms.

use serde_json::{Map, Value as Json};
use statflow_dataflow::query::Filter;
use statflow_dataflow::value::Value;
use statflow_dsl::{did_you_mean, FieldType, MetricPlan};

use super::validate::{hint, join_path, list, Checker};

/// How deep `and`, `or` and `not` may nest in filters.
pub const MAX_FILTER_DEPTH: usize = 16;

/// Operators of a condition object.
pub const OPERATORS: [&str; 11] = [
    "eq", "in", "regex", "range", "not", "and", "or", "gte", "gt", "lt", "lte",
];

const RANGE_BOUNDS: [&str; 4] = ["gte", "gt", "lt", "lte"];

/// True when `text` has no regular-expression meaning: it matches only itself.
pub fn is_plain_word(text: &str) -> bool {
    !text.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))
}

impl Checker {
    // ---- filters ---------------------------------------------------------

    pub(super) fn filters(&mut self, v: &Json, m: &MetricPlan) -> Option<Filter> {
        let obj = self.object(
            "filters",
            v,
            "an object of conditions by dimension, such as {\"reward_type\": \"task\"}",
        )?;
        match self.filter_map("filters", obj, m, 0) {
            Filter::And(all) if all.is_empty() => None,
            f => Some(f),
        }
    }

    /// A map of conditions by dimension (plus `and`/`or`/`not`), all of
    /// which must hold. Conjuncts are ordered by dimension, then and/or/not.
    fn filter_map(
        &mut self,
        path: &str,
        obj: &Map<String, Json>,
        m: &MetricPlan,
        depth: usize,
    ) -> Filter {
        let mut parts: Vec<((usize, usize), Filter)> = Vec::new();
        for (key, v) in obj {
            let here = join_path(path, key);
            if let Some(i) = m.dimensions.iter().position(|d| d.name == *key) {
                if let Some(f) = self.condition(&here, v, i, m, depth) {
                    parts.push(((0, i), f));
                }
                continue;
            }
            let logical = match key.as_str() {
                "and" | "or" => {
                    if !self.deep_enough(&here, depth) {
                        continue;
                    }
                    let Some(items) = v.as_array() else {
                        self.bad_type(&here, "an array of filter maps", v);
                        continue;
                    };
                    let mut fs = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{here}[{i}]");
                        if let Some(o) = self.object(
                            &at,
                            item,
                            "a filter map such as {\"reward_type\": \"task\"}",
                        ) {
                            fs.push(self.filter_map(&at, o, m, depth + 1));
                        }
                    }
                    if key == "and" {
                        ((1, 0), Filter::And(fs))
                    } else {
                        ((1, 1), Filter::Or(fs))
                    }
                }
                "not" => {
                    if !self.deep_enough(&here, depth) {
                        continue;
                    }
                    let inner = match v {
                        Json::Object(o) => self.filter_map(&here, o, m, depth + 1),
                        Json::Array(items) => {
                            let mut fs = Vec::new();
                            for (i, item) in items.iter().enumerate() {
                                let at = format!("{here}[{i}]");
                                if let Some(o) = self.object(&at, item, "a filter map") {
                                    fs.push(self.filter_map(&at, o, m, depth + 1));
                                }
                            }
                            Filter::And(fs)
                        }
                        other => {
                            self.bad_type(
                                &here,
                                "a filter map such as {\"reward_type\": \"task\"}",
                                other,
                            );
                            continue;
                        }
                    };
                    ((1, 2), Filter::Not(Box::new(inner)))
                }
                _ => {
                    let mut candidates: Vec<&str> =
                        m.dimensions.iter().map(|d| d.name.as_str()).collect();
                    let dims = candidates.clone();
                    candidates.extend(["and", "or", "not"]);
                    let hint = match did_you_mean(key, candidates.iter().copied()) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None if OPERATORS.contains(&key.as_str()) => format!(
                            "; `{key}` is an operator: write it inside a dimension's condition, as in {{\"reward_type\": {{\"{key}\": ...}}}}."
                        ),
                        None => hint(key, &dims, "dimensions"),
                    };
                    self.push(
                        "unknown_dimension",
                        here,
                        format!("Metric `{}` has no dimension `{key}`{hint}", m.name),
                    );
                    continue;
                }
            };
            parts.push(logical);
        }
        parts.sort_by_key(|(k, _)| *k);
        let mut fs: Vec<Filter> = parts.into_iter().map(|(_, f)| f).collect();
        if fs.len() == 1 {
            fs.pop().unwrap_or(Filter::And(Vec::new()))
        } else {
            Filter::And(fs)
        }
    }

    fn deep_enough(&mut self, path: &str, depth: usize) -> bool {
        if depth >= MAX_FILTER_DEPTH {
            self.push(
                "bad_filter",
                path,
                format!("Filters nest more than {MAX_FILTER_DEPTH} deep here: write them flatter."),
            );
            false
        } else {
            true
        }
    }

    /// The condition on one dimension: a string, a scalar, an array, or an
    /// object of operators.
    fn condition(
        &mut self,
        path: &str,
        v: &Json,
        dim: usize,
        m: &MetricPlan,
        depth: usize,
    ) -> Option<Filter> {
        match v {
            Json::String(s) if !is_plain_word(s) => self.regex(path, s, dim),
            Json::Array(items) => self.set(path, items, dim, m).map(|vs| Filter::In(dim, vs)),
            Json::Object(ops) => self.operators(path, ops, dim, m, depth),
            scalar => self
                .literal(path, scalar, dim, m)
                .map(|x| Filter::Eq(dim, x)),
        }
    }

    /// A value to compare a dimension with, exactly.
    fn literal(&mut self, path: &str, v: &Json, dim: usize, m: &MetricPlan) -> Option<Value> {
        let d = &m.dimensions[dim];
        match v {
            Json::Null => Some(Value::Null),
            Json::Bool(b) => Some(Value::Bool(*b)),
            Json::Number(n) => Some(Value::number(n.as_f64().unwrap_or(f64::NAN))),
            Json::String(s) if d.ty == Some(FieldType::Number) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Some(Value::number(x)),
                _ => {
                    self.push(
                        "bad_type",
                        path,
                        format!("Dimension `{}` holds numbers, so \"{s}\" never matches: write a number, or a regular expression to match its digits.", d.name),
                    );
                    None
                }
            },
            Json::String(s) => Some(Value::Str(s.as_str().into())),
            other => {
                self.bad_type(path, "a string, number, boolean or null", other);
                None
            }
        }
    }

    fn set(
        &mut self,
        path: &str,
        items: &[Json],
        dim: usize,
        m: &MetricPlan,
    ) -> Option<Vec<Value>> {
        let mut values = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.literal(&format!("{path}[{i}]"), item, dim, m) {
                Some(x) => values.push(x),
                None => ok = false,
            }
        }
        values.sort();
        values.dedup();
        ok.then_some(values)
    }

    fn regex(&mut self, path: &str, pattern: &str, dim: usize) -> Option<Filter> {
        // The pattern must stand on its own (so that wrapping it cannot
        // change its meaning, as with `a)|(b`) and anchored, as the engine runs it.
        let checked =
            regex::Regex::new(pattern).and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")));
        match checked {
            Ok(_) => Some(Filter::Regex(dim, pattern.to_string())),
            Err(e) => {
                self.push(
                    "bad_regex",
                    path,
                    format!(
                        "`{pattern}` is not a regular expression: {}. Write a pattern such as \"fuc|tax-up\", or {{\"eq\": ...}} to match text exactly.",
                        regex_problem(&e)
                    ),
                );
                None
            }
        }
    }

    fn operators(
        &mut self,
        path: &str,
        ops: &Map<String, Json>,
        dim: usize,
        m: &MetricPlan,
        depth: usize,
    ) -> Option<Filter> {
        if ops.is_empty() {
            self.push(
                "bad_filter",
                path,
                format!(
                    "This condition is empty: write a value, or an object with one of {}.",
                    list(&OPERATORS[..7])
                ),
            );
            return None;
        }
        let mut parts = Vec::new();
        let mut ok = true;
        let mut range = Map::new();
        for (op, v) in ops {
            let here = join_path(path, op);
            let part = match op.as_str() {
                "eq" => self.literal(&here, v, dim, m).map(|x| Filter::Eq(dim, x)),
                "in" => match v.as_array() {
                    Some(items) => self.set(&here, items, dim, m).map(|vs| Filter::In(dim, vs)),
                    None => {
                        self.bad_type(&here, "an array of values", v);
                        None
                    }
                },
                "regex" => self
                    .string(&here, v, "a regular expression such as \"fuc|tax-up\"")
                    .and_then(|p| self.regex(&here, p, dim)),
                "range" => match self.object(
                    &here,
                    v,
                    "an object of bounds such as {\"gte\": 1, \"lt\": 10}",
                ) {
                    Some(bounds) => self.range(&here, bounds, dim, m),
                    None => None,
                },
                "gte" | "gt" | "lt" | "lte" => {
                    range.insert(op.clone(), v.clone());
                    continue;
                }
                "not" => {
                    if !self.deep_enough(&here, depth) {
                        ok = false;
                        continue;
                    }
                    self.condition(&here, v, dim, m, depth + 1)
                        .map(|f| Filter::Not(Box::new(f)))
                }
                "and" | "or" => {
                    if !self.deep_enough(&here, depth) {
                        ok = false;
                        continue;
                    }
                    match v.as_array() {
                        Some(items) => {
                            let mut fs = Vec::new();
                            let mut all = true;
                            for (i, item) in items.iter().enumerate() {
                                match self.condition(
                                    &format!("{here}[{i}]"),
                                    item,
                                    dim,
                                    m,
                                    depth + 1,
                                ) {
                                    Some(f) => fs.push(f),
                                    None => all = false,
                                }
                            }
                            all.then(|| {
                                if op == "and" {
                                    Filter::And(fs)
                                } else {
                                    Filter::Or(fs)
                                }
                            })
                        }
                        None => {
                            self.bad_type(&here, "an array of conditions", v);
                            None
                        }
                    }
                }
                other => {
                    self.push(
                        "unknown_operator",
                        &here,
                        format!(
                            "`{other}` is not a condition operator{}",
                            hint(other, &OPERATORS, "operators")
                        ),
                    );
                    None
                }
            };
            match part {
                Some(f) => parts.push(f),
                None => ok = false,
            }
        }
        if !range.is_empty() {
            match self.range(path, &range, dim, m) {
                Some(f) => parts.push(f),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if parts.len() == 1 {
            parts.pop()
        } else {
            Some(Filter::And(parts))
        }
    }

    fn range(
        &mut self,
        path: &str,
        bounds: &Map<String, Json>,
        dim: usize,
        m: &MetricPlan,
    ) -> Option<Filter> {
        let d = &m.dimensions[dim];
        let mut ok = true;
        if let Some(ty) = d.ty.filter(|t| *t != FieldType::Number) {
            self.push(
                "bad_filter",
                path,
                format!("A range compares numbers, but dimension `{}` is declared `{}`: use a value, a set or a regular expression.", d.name, ty.keyword()),
            );
            ok = false;
        }
        if bounds.is_empty() {
            self.push(
                "bad_filter",
                path,
                "This range has no bound: give at least one of `gte`, `gt`, `lt` and `lte`.",
            );
            return None;
        }
        let mut b = [None; 4];
        for (key, v) in bounds {
            let here = join_path(path, key);
            let Some(at) = RANGE_BOUNDS.iter().position(|k| k == key) else {
                self.push(
                    "unknown_operator",
                    &here,
                    format!(
                        "`{key}` is not a range bound{}",
                        hint(key, &RANGE_BOUNDS, "bounds")
                    ),
                );
                ok = false;
                continue;
            };
            match v.as_f64() {
                Some(x) => b[at] = Some(x),
                None => {
                    self.bad_type(&here, "a number", v);
                    ok = false;
                }
            }
        }
        ok.then_some(Filter::Range {
            dimension: dim,
            gte: b[0],
            gt: b[1],
            lt: b[2],
            lte: b[3],
        })
    }
}

/// The one-line reason inside the regex crate's multi-line error.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            text.lines()
                .last()
                .unwrap_or("it does not compile")
                .trim()
                .to_string()
        })
        .trim_end_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::validate::fixtures::*;
    use super::*;
    use crate::query::validate::validate;
    use serde_json::json;

    #[test]
    fn filter_forms() {
        let f = |filters: Json| ok(&with(json!({"filters": filters}))).filter;
        assert_eq!(f(json!({})), None);
        assert_eq!(
            f(json!({"seed_id": "tax-up"})),
            Some(Filter::Eq(1, Value::Str("tax-up".into())))
        );
        assert_eq!(
            f(json!({"seed_id": {"eq": "a.b"}})),
            Some(Filter::Eq(1, Value::Str("a.b".into())))
        );
        assert_eq!(
            f(json!({"seed_id": "a.b"})),
            Some(Filter::Regex(1, "a.b".into()))
        );
        assert_eq!(f(json!({"game_id": 7})), Some(Filter::Eq(0, Value::Int(7))));
        assert_eq!(
            f(json!({"game_id": null})),
            Some(Filter::Eq(0, Value::Null))
        );
        assert_eq!(
            f(json!({"or": [{"seed_id": "a"}, {"reward_type": {"regex": "t.*"}}]})),
            Some(Filter::Or(vec![
                Filter::Eq(1, Value::Str("a".into())),
                Filter::Regex(2, "t.*".into()),
            ]))
        );
        assert_eq!(
            f(json!({"not": {"seed_id": "a"}, "game_id": {"or": [1, {"in": [2]}]}})),
            Some(Filter::And(vec![
                Filter::Or(vec![
                    Filter::Eq(0, Value::Int(1)),
                    Filter::In(0, vec![Value::Int(2)])
                ]),
                Filter::Not(Box::new(Filter::Eq(1, Value::Str("a".into())))),
            ]))
        );
        assert_eq!(
            f(json!({"seed_id": {"regex": "x|y", "not": "z"}})),
            Some(Filter::And(vec![
                Filter::Not(Box::new(Filter::Eq(1, Value::Str("z".into())))),
                Filter::Regex(1, "x|y".into()),
            ]))
        );
    }

    #[test]
    fn declared_number_dimensions_read_numeric_text() {
        let body = json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": ["3", 4]}});
        let q = validate(&body, &more(), NOW).unwrap();
        assert_eq!(
            q.filter,
            Some(Filter::In(1, vec![Value::Int(3), Value::Int(4)]))
        );
        one_in(
            &more(),
            json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": "high"}}),
            "bad_type",
            "filters.level",
        );
        let range = |r: Json| {
            let body =
                json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": r}});
            validate(&body, &more(), NOW).unwrap().filter
        };
        assert_eq!(
            range(json!({"gte": 1, "lt": 5})),
            Some(Filter::Range {
                dimension: 1,
                gte: Some(1.0),
                gt: None,
                lt: Some(5.0),
                lte: None
            })
        );
        assert_eq!(
            range(json!({"range": {"gt": 1.5}})),
            Some(Filter::Range {
                dimension: 1,
                gte: None,
                gt: Some(1.5),
                lt: None,
                lte: None
            })
        );
        let m = one_in(
            &more(),
            json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"game_id": {"gte": 1}}}),
            "bad_filter",
            "filters.game_id",
        );
        assert!(m.contains("declared `string`"), "{m}");
    }

    #[test]
    fn plain_words() {
        assert!(is_plain_word("tax-up"));
        assert!(is_plain_word("task_1 #2 & ~"));
        assert!(!is_plain_word("fuc|tax-up"));
        assert!(!is_plain_word("v1.2"));
    }
}
