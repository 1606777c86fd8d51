//! The temporal part of a temporal query (GS CIM 009 §4.11, §5.7.3, §5.7.4): `timerel`,
//! `timeAt`, `endTimeAt` and `timeproperty` select instances by time, `lastN` keeps each
//! attribute's most recent ones, `attrs` and `datasetId` keep some attributes and instances.
//! Selection copies out only what is kept, in chronological order. Pure.

use super::{Instance, TemporalEntity};
use crate::error::{NgsiError, NgsiResult};
use crate::model::{Entity, Instances, parse_datetime};

/// The instance timestamp a query looks at (`timeproperty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn parse(s: &str) -> NgsiResult<TimeProperty> {
        match s {
            "observedAt" => Ok(TimeProperty::ObservedAt),
            "createdAt" => Ok(TimeProperty::CreatedAt),
            "modifiedAt" => Ok(TimeProperty::ModifiedAt),
            "deletedAt" => Ok(TimeProperty::DeletedAt),
            other => Err(NgsiError::bad_data(format!(
                "timeproperty must be observedAt, createdAt, modifiedAt or deletedAt, not {other:?}"
            ))),
        }
    }

    /// The instance's timestamp in milliseconds, if it has one.
    pub fn of(self, i: &Instance) -> Option<i64> {
        match self {
            TimeProperty::ObservedAt => i.attr.observed_at().and_then(|s| parse_datetime(&s)),
            TimeProperty::CreatedAt => Some(i.attr.created_at),
            TimeProperty::ModifiedAt => Some(i.attr.modified_at),
            TimeProperty::DeletedAt => i.deleted_at,
        }
    }
}

/// A time relation (`timerel` with `timeAt` and `endTimeAt`), in milliseconds: `before` keeps
/// times before `timeAt`, `after` those at or after it, `between` those from `timeAt` up to,
/// not including, `endTimeAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    Before(i64),
    After(i64),
    Between(i64, i64),
}

impl TimeRel {
    /// Parses the URL parameters; `timeAt` and `endTimeAt` without `timerel`, or `timerel`
    /// without what it needs, are bad request data.
    pub fn parse(timerel: Option<&str>, time_at: Option<&str>, end: Option<&str>) -> NgsiResult<Option<TimeRel>> {
        let at = |name: &str, v: Option<&str>| -> NgsiResult<i64> {
            let v = v.ok_or_else(|| NgsiError::bad_data(format!("timerel needs {name}")))?;
            parse_datetime(v).ok_or_else(|| NgsiError::bad_data(format!("{name} {v:?} is not a DateTime")))
        };
        match timerel {
            None if time_at.is_some() || end.is_some() => {
                Err(NgsiError::bad_data("timeAt and endTimeAt need timerel (before, after or between)"))
            }
            None => Ok(None),
            Some("before") => Ok(Some(TimeRel::Before(at("timeAt", time_at)?))),
            Some("after") => Ok(Some(TimeRel::After(at("timeAt", time_at)?))),
            Some("between") => {
                let (a, b) = (at("timeAt", time_at)?, at("endTimeAt", end)?);
                if b <= a {
                    return Err(NgsiError::bad_data("endTimeAt must be after timeAt"));
                }
                Ok(Some(TimeRel::Between(a, b)))
            }
            Some(other) => Err(NgsiError::bad_data(format!("timerel must be before, after or between, not {other:?}"))),
        }
    }

    pub fn contains(self, t: i64) -> bool {
        match self {
            TimeRel::Before(a) => t < a,
            TimeRel::After(a) => t >= a,
            TimeRel::Between(a, b) => a <= t && t < b,
        }
    }
}

/// What a temporal query keeps of each entity's history.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub timerel: Option<TimeRel>,
    pub timeproperty: TimeProperty,
    /// Per attribute, only the N most recent instances.
    pub last_n: Option<usize>,
    /// Expanded attribute names to keep (all when absent).
    pub attrs: Option<Vec<String>>,
    /// datasetIds to keep (`@none`: the default instances).
    pub dataset_ids: Option<Vec<String>>,
    /// The most instances one entity's answer holds (GS CIM 009 §6.3.10): beyond it the oldest
    /// ones are kept (the most recent ones with `lastN`), whatever their attribute.
    pub max_instances: Option<usize>,
}

/// The kept part of a temporal entity: attributes with their selected instances, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub id: String,
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    pub created_at: i64,
    pub modified_at: i64,
    /// Attributes with their kept instances; an attribute whose instances were all cut by
    /// `max_instances` stays, empty.
    pub attrs: Vec<(String, Vec<Instance>)>,
    /// Whether `max_instances` cut instances the selection would otherwise keep.
    pub truncated: bool,
    /// The earliest and the latest time (of the selection's time property) of the kept
    /// instances that have one.
    pub span: Option<(i64, i64)>,
}

impl View {
    /// The view as an entity whose attributes hold every selected instance, so the query
    /// language (`q`, `scopeQ`, geo-queries) can test it: an attribute matches when one of its
    /// instances does.
    pub fn as_entity(&self) -> Entity {
        let mut attrs = crate::model::AttrMap::new();
        for (name, list) in &self.attrs {
            let instances: Instances = list.iter().map(|i| i.attr.clone()).collect();
            attrs.insert(crate::model::intern(name), instances);
        }
        Entity {
            id: self.id.as_str().into(),
            types: self.types.iter().map(|t| crate::model::intern(t)).collect(),
            scope: self.scope.clone().map(Box::new),
            attrs,
            created_at: self.created_at,
            modified_at: self.modified_at,
        }
    }

    /// The number of instances kept.
    pub fn instances(&self) -> usize {
        self.attrs.iter().map(|(_, l)| l.len()).sum()
    }
}

impl Selection {
    fn keeps_dataset(&self, i: &Instance) -> bool {
        match &self.dataset_ids {
            None => true,
            Some(ids) => ids.iter().any(|d| match i.attr.dataset_id() {
                Some(x) => x == d,
                None => d == "@none",
            }),
        }
    }

    /// Copies out what the selection keeps of an entity's history.
    pub fn select(&self, e: &TemporalEntity) -> View {
        // Per attribute, the kept instances with their times, oldest first.
        let mut lists: Vec<(&String, Vec<(i64, &Instance)>)> = Vec::new();
        for (name, list) in &e.attrs {
            if self.attrs.as_ref().is_some_and(|a| !a.iter().any(|n| n == name)) {
                continue;
            }
            let mut kept: Vec<(i64, &Instance)> = list
                .iter()
                .filter(|i| self.keeps_dataset(i))
                .filter_map(|i| match (self.timerel, self.timeproperty.of(i)) {
                    (Some(rel), Some(t)) => rel.contains(t).then_some((t, i)),
                    (Some(_), None) => None,
                    // deletedAt asks for deletions: only tombstones have one.
                    (None, None) if self.timeproperty == TimeProperty::DeletedAt => None,
                    // Without a time relation every instance is kept; those without the time
                    // property sort by their creation.
                    (None, t) => Some((t.unwrap_or(i.attr.created_at), i)),
                })
                .collect();
            kept.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.attr.created_at.cmp(&b.1.attr.created_at)));
            if let Some(n) = self.last_n {
                let skip = kept.len().saturating_sub(n);
                kept.drain(..skip);
            }
            if !kept.is_empty() {
                lists.push((name, kept));
            }
        }
        let total: usize = lists.iter().map(|(_, l)| l.len()).sum();
        let truncated = self.max_instances.is_some_and(|max| total > max);
        if let (true, Some(max)) = (truncated, self.max_instances) {
            // The time from which (oldest first) or up to which (lastN: newest first) instances
            // stay, across attributes; ties at the cut go by attribute order.
            let mut all: Vec<(i64, usize, usize)> = Vec::with_capacity(total);
            for (a, (_, l)) in lists.iter().enumerate() {
                all.extend(l.iter().enumerate().map(|(k, (t, _))| (*t, a, k)));
            }
            all.sort_unstable();
            let keep: std::collections::HashSet<(usize, usize)> = match self.last_n {
                Some(_) => all.iter().rev().take(max).map(|&(_, a, k)| (a, k)).collect(),
                None => all.iter().take(max).map(|&(_, a, k)| (a, k)).collect(),
            };
            for (a, (_, l)) in lists.iter_mut().enumerate() {
                let mut k = 0;
                l.retain(|_| {
                    k += 1;
                    keep.contains(&(a, k - 1))
                });
            }
        }
        let mut span: Option<(i64, i64)> = None;
        for (_, l) in &lists {
            for (_, i) in l {
                if let Some(t) = self.timeproperty.of(i) {
                    span = Some(span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
                }
            }
        }
        View {
            id: e.id.clone(),
            types: e.types.clone(),
            scope: e.scope.clone(),
            created_at: e.created_at,
            modified_at: e.modified_at,
            attrs: lists
                .into_iter()
                .map(|(n, l)| (n.clone(), l.into_iter().map(|(_, i)| i.clone()).collect()))
                .collect(),
            truncated,
            span,
        }
    }
}

/// The `Content-Range` of a temporal answer that `max_instances` cut (GS CIM 009 §6.3.10):
/// `date-time <start>-<end>/<size>`, from the time relation's bound the answer starts at (or
/// its first instance) to the instance where it was cut, newest first with `lastN` (whose
/// value is the size; `*` otherwise).
pub fn content_range(views: &[View], sel: &Selection) -> Option<String> {
    if !views.iter().any(|v| v.truncated) {
        return None;
    }
    let (lo, hi) = views.iter().filter_map(|v| v.span).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))?;
    let fmt = crate::model::format_millis;
    let (start, end) = match (sel.last_n, sel.timerel) {
        (Some(_), Some(TimeRel::Before(t))) | (Some(_), Some(TimeRel::Between(_, t))) => (t, lo),
        (Some(_), _) => (hi, lo),
        (None, Some(TimeRel::After(t))) | (None, Some(TimeRel::Between(t, _))) => (t, hi),
        (None, _) => (lo, hi),
    };
    let size = sel.last_n.map_or("*".to_owned(), |n| n.to_string());
    Some(format!("date-time {}-{}/{size}", fmt(start), fmt(end)))
}

/// Parses `lastN`: a positive integer.
pub fn parse_last_n(v: Option<&str>) -> NgsiResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(NgsiError::bad_data(format!("lastN must be a positive integer, not {s:?}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrKind, Attribute};
    use serde_json::json;

    fn inst(v: i64, observed: &str, created: i64) -> Instance {
        let mut a = Attribute::new(AttrKind::Property, &json!(v), created);
        a.set_observed_at(Some(observed.into()));
        Instance { instance_id: format!("urn:i:{v}"), attr: a, deleted_at: None }
    }

    fn entity() -> TemporalEntity {
        let mut e = TemporalEntity { id: "urn:e".into(), types: vec!["T".into()], ..Default::default() };
        e.attrs.insert(
            "p".into(),
            vec![
                inst(3, "2020-01-01T00:03:00Z", 1),
                inst(1, "2020-01-01T00:01:00Z", 2),
                inst(2, "2020-01-01T00:02:00Z", 3),
            ],
        );
        e.attrs.insert("q".into(), vec![inst(9, "2021-01-01T00:00:00Z", 4)]);
        e
    }

    fn values(v: &View, attr: &str) -> Vec<i64> {
        v.attrs
            .iter()
            .find(|(n, _)| n == attr)
            .map_or(vec![], |(_, l)| l.iter().map(|i| i.attr.value().as_i64().unwrap()).collect())
    }

    #[test]
    fn time_relations() {
        let t = |s: &str| parse_datetime(s).unwrap();
        let rel = TimeRel::parse(Some("after"), Some("2020-01-01T00:02:00Z"), None).unwrap();
        let v = Selection { timerel: rel, ..Default::default() }.select(&entity());
        assert_eq!(values(&v, "p"), vec![2, 3]);
        assert_eq!(values(&v, "q"), vec![9]);
        let rel = TimeRel::parse(Some("before"), Some("2020-01-01T00:02:00Z"), None).unwrap();
        let v = Selection { timerel: rel, ..Default::default() }.select(&entity());
        assert_eq!(values(&v, "p"), vec![1]);
        assert!(v.attrs.iter().all(|(n, _)| n != "q"));
        let rel = TimeRel::parse(Some("between"), Some("2020-01-01T00:01:00Z"), Some("2020-01-01T00:03:00Z")).unwrap();
        assert_eq!(rel, Some(TimeRel::Between(t("2020-01-01T00:01:00Z"), t("2020-01-01T00:03:00Z"))));
        let v = Selection { timerel: rel, ..Default::default() }.select(&entity());
        assert_eq!(values(&v, "p"), vec![1, 2]);
    }

    #[test]
    fn bad_time_parameters() {
        assert!(TimeRel::parse(Some("after"), None, None).is_err());
        assert!(TimeRel::parse(Some("between"), Some("2020-01-01T00:00:00Z"), None).is_err());
        assert!(TimeRel::parse(Some("during"), Some("2020-01-01T00:00:00Z"), None).is_err());
        assert!(TimeRel::parse(Some("after"), Some("yesterday"), None).is_err());
        assert!(TimeRel::parse(None, Some("2020-01-01T00:00:00Z"), None).is_err());
        assert_eq!(TimeRel::parse(None, None, None).unwrap(), None);
        assert!(TimeProperty::parse("observedAt").is_ok());
        assert!(TimeProperty::parse("updatedAt").is_err());
        assert!(parse_last_n(Some("0")).is_err());
        assert_eq!(parse_last_n(Some("2")).unwrap(), Some(2));
    }

    #[test]
    fn last_n_and_attrs() {
        let s = Selection { last_n: Some(2), attrs: Some(vec!["p".into()]), ..Default::default() };
        let v = s.select(&entity());
        assert_eq!(values(&v, "p"), vec![2, 3]);
        assert_eq!(v.attrs.len(), 1);
        let s = Selection { timeproperty: TimeProperty::CreatedAt, last_n: Some(1), ..Default::default() };
        assert_eq!(values(&s.select(&entity()), "p"), vec![2]);
    }

    #[test]
    fn max_instances_cut_across_attributes() {
        let s = Selection { max_instances: Some(2), ..Default::default() };
        let v = s.select(&entity());
        assert!(v.truncated);
        assert_eq!(values(&v, "p"), vec![1, 2]);
        // The attribute whose instances were all cut stays, empty.
        assert!(v.attrs.iter().any(|(n, l)| n == "q" && l.is_empty()));
        let range = content_range(std::slice::from_ref(&v), &s).unwrap();
        assert_eq!(range, "date-time 2020-01-01T00:01:00.000Z-2020-01-01T00:02:00.000Z/*");
        let s = Selection { max_instances: Some(2), last_n: Some(3), ..Default::default() };
        let v = s.select(&entity());
        assert_eq!(values(&v, "p"), vec![3]);
        assert_eq!(values(&v, "q"), vec![9]);
        let range = content_range(std::slice::from_ref(&v), &s).unwrap();
        assert_eq!(range, "date-time 2021-01-01T00:00:00.000Z-2020-01-01T00:03:00.000Z/3");
        let s = Selection { max_instances: Some(4), ..Default::default() };
        assert!(content_range(&[s.select(&entity())], &s).is_none());
    }

    #[test]
    fn a_view_is_queryable_as_an_entity() {
        let v = Selection::default().select(&entity());
        assert!(!v.truncated);
        let e = v.as_entity();
        assert_eq!(e.attrs.get("p").map(|i| i.len()), Some(3));
        assert_eq!(v.instances(), 4);
    }
}
