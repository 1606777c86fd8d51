//! The aggregated temporal representation (GS CIM 009 §4.5.19): instead of its instances, each
//! attribute shows, per aggregation method (`aggrMethods`), one `[value, startAt, endAt]`
//! triple per period of `aggrPeriodDuration` that holds instances. Clients ask for it to get
//! statistics over long histories without downloading every instance.
//!
//! Periods are aligned on the start of the requested time range: `timeAt` for `after` and
//! `between`, otherwise the earliest kept instance of the entity; a zero duration (`PT0S`, the
//! default) makes the whole range one period, which ends at `endTimeAt` (`between`), `timeAt`
//! (`before`) or the latest kept instance. Years and months are calendar months, the rest fixed
//! lengths. Numeric methods (sum, avg, stddev, sumsq) use numbers, booleans counting as 1 and 0;
//! min and max also order strings; a method that applies to none of a period's values gives
//! null. totalCount and distinctCount apply to every value. stddev is the population standard
//! deviation. Deletion tombstones are not values and are left out. Pure.

use std::collections::HashSet;

use chrono::{DateTime, Months};
use serde_json::{Map, Value, json};

use super::Instance;
use super::query::{TimeProperty, TimeRel};
use crate::error::{NgsiError, NgsiResult};

/// One aggregation method of §4.5.19.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    StdDev,
    SumSq,
}

impl Method {
    pub fn parse(s: &str) -> NgsiResult<Method> {
        Ok(match s {
            "totalCount" => Method::TotalCount,
            "distinctCount" => Method::DistinctCount,
            "sum" => Method::Sum,
            "avg" => Method::Avg,
            "min" => Method::Min,
            "max" => Method::Max,
            "stddev" => Method::StdDev,
            "sumsq" => Method::SumSq,
            other => {
                return Err(NgsiError::bad_data(format!(
                    "aggrMethods: {other:?} is not one of totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"
                )));
            }
        })
    }

    /// The member of the aggregated representation holding this method's triples.
    pub fn name(self) -> &'static str {
        match self {
            Method::TotalCount => "totalCount",
            Method::DistinctCount => "distinctCount",
            Method::Sum => "sum",
            Method::Avg => "avg",
            Method::Min => "min",
            Method::Max => "max",
            Method::StdDev => "stddev",
            Method::SumSq => "sumsq",
        }
    }
}

/// An ISO 8601 duration as calendar months plus a fixed number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration {
    pub months: u32,
    pub millis: i64,
}

impl Duration {
    /// Parses `PnYnMnWnDTnHnMnS` (seconds may have a fraction); anything else, or a duration
    /// without any component, is bad request data.
    pub fn parse(s: &str) -> NgsiResult<Duration> {
        let bad = || NgsiError::bad_data(format!("aggrPeriodDuration {s:?} is not an ISO 8601 duration"));
        let rest = s.strip_prefix('P').ok_or_else(bad)?;
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(bad()),
            Some((d, t)) => (d, Some(t)),
            None => (rest, None),
        };
        let mut d = Duration::default();
        let mut any = false;
        for (part, in_time) in [(date, false), (time.unwrap_or(""), true)] {
            let mut num = String::new();
            for c in part.chars() {
                if c.is_ascii_digit() || (c == '.' && in_time) {
                    num.push(c);
                    continue;
                }
                if num.is_empty() {
                    return Err(bad());
                }
                let n: f64 = num.parse().map_err(|_| bad())?;
                let whole = || -> NgsiResult<i64> {
                    if num.contains('.') { Err(bad()) } else { num.parse::<i64>().map_err(|_| bad()) }
                };
                const DAY: i64 = 86_400_000;
                match (c, in_time) {
                    ('Y', false) => d.months = add_months(d.months, whole()?, 12).ok_or_else(bad)?,
                    ('M', false) => d.months = add_months(d.months, whole()?, 1).ok_or_else(bad)?,
                    ('W', false) => d.millis = add_millis(d.millis, whole()?, 7 * DAY).ok_or_else(bad)?,
                    ('D', false) => d.millis = add_millis(d.millis, whole()?, DAY).ok_or_else(bad)?,
                    ('H', true) => d.millis = add_millis(d.millis, whole()?, 3_600_000).ok_or_else(bad)?,
                    ('M', true) => d.millis = add_millis(d.millis, whole()?, 60_000).ok_or_else(bad)?,
                    ('S', true) => {
                        let ms = n * 1000.0;
                        if !ms.is_finite() || ms > 1e15 {
                            return Err(bad());
                        }
                        d.millis = d.millis.checked_add(ms.round() as i64).ok_or_else(bad)?;
                    }
                    _ => return Err(bad()),
                }
                any = true;
                num.clear();
            }
            if !num.is_empty() {
                return Err(bad());
            }
        }
        if !any {
            return Err(bad());
        }
        Ok(d)
    }

    pub fn is_zero(self) -> bool {
        self.months == 0 && self.millis == 0
    }

    /// `t` plus `k` times this duration, if representable.
    fn step(self, t: i64, k: i64) -> Option<i64> {
        let mut dt = DateTime::from_timestamp_millis(t)?;
        let months = i64::from(self.months).checked_mul(k)?;
        let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
        dt = if months >= 0 { dt.checked_add_months(m)? } else { dt.checked_sub_months(m)? };
        dt.timestamp_millis().checked_add(self.millis.checked_mul(k)?)
    }
}

fn add_months(acc: u32, n: i64, unit: i64) -> Option<u32> {
    u32::try_from(n.checked_mul(unit)?).ok().and_then(|m| acc.checked_add(m)).filter(|m| *m <= 120_000)
}

fn add_millis(acc: i64, n: i64, unit: i64) -> Option<i64> {
    acc.checked_add(n.checked_mul(unit)?)
}

/// What an aggregated read asks for: the methods, in request order, and the period.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub methods: Vec<Method>,
    pub period: Duration,
}

impl Aggregation {
    /// Parses `aggrMethods` (already split on commas) and `aggrPeriodDuration` (default
    /// `PT0S`: one period); methods are needed.
    pub fn parse(methods: Option<&[String]>, period: Option<&str>) -> NgsiResult<Aggregation> {
        let names = methods
            .filter(|m| !m.is_empty())
            .ok_or_else(|| NgsiError::bad_data("the aggregated temporal representation needs aggrMethods"))?;
        let mut methods = Vec::with_capacity(names.len());
        for n in names {
            let m = Method::parse(n.trim())?;
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        let period = period.map(Duration::parse).transpose()?.unwrap_or_default();
        Ok(Aggregation { methods, period })
    }
}

/// The time range an entity's periods cover: where the first starts, and where a single
/// whole-range period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

impl Range {
    /// The range of a read with time relation `rel` whose kept instances span `span`.
    pub fn of(rel: Option<TimeRel>, span: Option<(i64, i64)>) -> Option<Range> {
        let (lo, hi) = match (rel, span) {
            (Some(TimeRel::Between(a, b)), _) => return Some(Range { start: a, end: b }),
            (_, None) => return None,
            (_, Some(s)) => s,
        };
        Some(match rel {
            Some(TimeRel::After(a)) => Range { start: a, end: hi.max(a) },
            Some(TimeRel::Before(b)) => Range { start: lo, end: b.max(lo) },
            _ => Range { start: lo, end: hi },
        })
    }
}

/// A DateTime as the aggregated representation shows it: without milliseconds when they are
/// zero.
fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) if ms.rem_euclid(1000) == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => crate::model::format_millis(ms),
    }
}

/// The index of the period holding `t`, and the period's bounds.
fn period_of(a: &Aggregation, range: Range, t: i64) -> Option<(i64, i64, i64)> {
    let d = a.period;
    if d.is_zero() {
        return Some((0, range.start, range.end));
    }
    // A lower bound of a period's length (months count as 28 days), so the estimate is at or
    // after the true index; it is then walked back.
    let approx = i64::from(d.months).saturating_mul(28 * 86_400_000).saturating_add(d.millis);
    let mut k = (t - range.start).div_euclid(approx.max(1));
    while d.step(range.start, k)? > t {
        k -= 1;
    }
    while d.step(range.start, k + 1)? <= t {
        k += 1;
    }
    Some((k, d.step(range.start, k)?, d.step(range.start, k + 1)?))
}

/// The aggregated form of one attribute (its kept instances, oldest first): one object per
/// datasetId (see [`super::render::per_dataset`]).
pub fn attribute(list: &[Instance], a: &Aggregation, range: Range, prop: TimeProperty) -> Value {
    super::render::per_dataset(list, |g| {
        let mut m = Map::new();
        m.insert("type".into(), json!(g[0].attr.kind.name()));
        // Per period (in time order), its bounds and values.
        let mut periods: Vec<(i64, i64, i64, Vec<Value>)> = Vec::new();
        for i in g.iter().filter(|i| i.deleted_at.is_none()) {
            let Some(t) = prop.of(i) else { continue };
            let Some((k, start, end)) = period_of(a, range, t) else { continue };
            match periods.iter_mut().find(|p| p.0 == k) {
                Some(p) => p.3.push(i.attr.value()),
                None => periods.push((k, start, end, vec![i.attr.value()])),
            }
        }
        periods.sort_by_key(|p| p.0);
        for method in &a.methods {
            let triples: Vec<Value> = periods
                .iter()
                .map(|(_, start, end, values)| json!([apply(*method, values), format_time(*start), format_time(*end)]))
                .collect();
            m.insert(method.name().into(), Value::Array(triples));
        }
        m
    })
}

/// A value as a number for the numeric methods: numbers, and booleans as 1 and 0.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// One method over one period's values.
pub fn apply(method: Method, values: &[Value]) -> Value {
    let nums: Vec<f64> = values.iter().filter_map(number).collect();
    let n = nums.len() as f64;
    let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match method {
        Method::TotalCount => json!(values.len()),
        Method::DistinctCount => {
            let distinct: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
            json!(distinct.len())
        }
        _ if nums.is_empty() && !matches!(method, Method::Min | Method::Max) => Value::Null,
        Method::Sum => num(nums.iter().sum()),
        Method::SumSq => num(nums.iter().map(|x| x * x).sum()),
        Method::Avg => num(nums.iter().sum::<f64>() / n),
        Method::StdDev => {
            let mean = nums.iter().sum::<f64>() / n;
            num((nums.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt())
        }
        Method::Min | Method::Max => extreme(method == Method::Max, values),
    }
}

/// min or max: over the numbers (booleans as 1 and 0) when there are any, otherwise over the
/// strings; null when neither.
fn extreme(max: bool, values: &[Value]) -> Value {
    let nums = values.iter().filter_map(|v| match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    });
    let best = nums.reduce(|a, b| if (b > a) == max { b } else { a });
    if let Some(x) = best {
        return serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    }
    let bools = values.iter().filter_map(Value::as_bool);
    if let Some(b) = bools.reduce(|a, b| if max { a || b } else { a && b }) {
        return json!(b);
    }
    let strings = values.iter().filter_map(Value::as_str);
    strings.reduce(|a, b| if (b > a) == max { b } else { a }).map_or(Value::Null, |s| json!(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrKind, Attribute, parse_datetime};

    fn t(s: &str) -> i64 {
        parse_datetime(s).unwrap_or_default()
    }

    fn inst(v: Value, observed: &str) -> Instance {
        let mut a = Attribute::new(AttrKind::Property, &v, 0);
        a.set_observed_at(Some(observed.into()));
        Instance { instance_id: "urn:i".into(), attr: a, deleted_at: None }
    }

    fn aggr(methods: &str, period: Option<&str>) -> Aggregation {
        let m: Vec<String> = methods.split(',').map(str::to_owned).collect();
        Aggregation::parse(Some(&m), period).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn durations() {
        let d = |s: &str| Duration::parse(s).ok();
        assert_eq!(d("PT1H"), Some(Duration { months: 0, millis: 3_600_000 }));
        assert_eq!(d("P1D"), Some(Duration { months: 0, millis: 86_400_000 }));
        assert_eq!(d("P1Y2M"), Some(Duration { months: 14, millis: 0 }));
        assert_eq!(d("P1W"), Some(Duration { months: 0, millis: 7 * 86_400_000 }));
        assert_eq!(d("PT1M1.5S"), Some(Duration { months: 0, millis: 61_500 }));
        assert_eq!(d("PT0S"), Some(Duration::default()));
        for bad in ["", "P", "PT", "bogus", "1H", "PT1", "P1H", "PTH", "P1.5D", "P1DT", "PT1S2"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn extreme_periods_do_not_overflow() {
        let t = 1_600_000_000_000;
        let range = Range { start: t, end: t + 1000 };
        for period in ["P1M106751991167D", "P10000Y", "P106751991167D", "PT0.001S"] {
            let a = aggr("avg", Some(period));
            let p = period_of(&a, range, t + 500);
            assert!(p.is_none_or(|(_, s, e)| s <= t + 500 && t + 500 < e), "{period}: {p:?}");
        }
    }

    #[test]
    fn parameters() {
        assert!(Aggregation::parse(None, None).is_err());
        assert!(Aggregation::parse(Some(&["bogus".into()]), None).is_err());
        assert!(Aggregation::parse(Some(&["avg".into()]), Some("bogus")).is_err());
        let a = aggr("avg,max,avg", None);
        assert_eq!(a.methods, vec![Method::Avg, Method::Max]);
        assert!(a.period.is_zero());
    }

    #[test]
    fn methods() {
        let v = [json!(1), json!(3), json!(3), json!(5)];
        assert_eq!(apply(Method::TotalCount, &v), json!(4));
        assert_eq!(apply(Method::DistinctCount, &v), json!(3));
        assert_eq!(apply(Method::Sum, &v), json!(12.0));
        assert_eq!(apply(Method::Avg, &v), json!(3.0));
        assert_eq!(apply(Method::Min, &v), json!(1.0));
        assert_eq!(apply(Method::Max, &v), json!(5.0));
        assert_eq!(apply(Method::SumSq, &v), json!(44.0));
        assert_eq!(apply(Method::StdDev, &v), json!(2.0_f64.sqrt()));
        let s = [json!("b"), json!("a"), json!("c")];
        assert_eq!(apply(Method::Min, &s), json!("a"));
        assert_eq!(apply(Method::Max, &s), json!("c"));
        assert_eq!(apply(Method::Avg, &s), Value::Null);
        assert_eq!(apply(Method::DistinctCount, &s), json!(3));
        let b = [json!(true), json!(false), json!(true)];
        assert_eq!(apply(Method::Sum, &b), json!(2.0));
        assert_eq!(apply(Method::Min, &b), json!(false));
        assert_eq!(apply(Method::Max, &b), json!(true));
    }

    #[test]
    fn periods_from_the_range_start() {
        let list = vec![
            inst(json!(67), "2020-08-01T12:03:00Z"),
            inst(json!(53), "2020-08-01T13:05:00Z"),
            inst(json!(40), "2020-08-01T14:07:00Z"),
        ];
        let range = Range::of(None, Some((t("2020-08-01T12:03:00Z"), t("2020-08-01T14:07:00Z")))).unwrap();
        let v = attribute(&list, &aggr("avg", Some("PT1H")), range, TimeProperty::ObservedAt);
        assert_eq!(
            v,
            json!({"type": "Property", "avg": [
                [67.0, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"],
                [53.0, "2020-08-01T13:03:00Z", "2020-08-01T14:03:00Z"],
                [40.0, "2020-08-01T14:03:00Z", "2020-08-01T15:03:00Z"]]})
        );
        // One period over the whole range by default; `after` starts it at timeAt.
        let range = Range::of(Some(TimeRel::After(t("2020-08-01T00:00:00Z"))), Some((range.start, range.end)));
        let v = attribute(&list, &aggr("min,totalCount", None), range.unwrap(), TimeProperty::ObservedAt);
        assert_eq!(v["min"], json!([[40.0, "2020-08-01T00:00:00Z", "2020-08-01T14:07:00Z"]]));
        assert_eq!(v["totalCount"], json!([[3, "2020-08-01T00:00:00Z", "2020-08-01T14:07:00Z"]]));
        // Calendar months.
        let range = Range { start: t("2020-01-31T00:00:00Z"), end: t("2020-03-01T00:00:00Z") };
        let v = attribute(&list, &aggr("sum", Some("P1M")), range, TimeProperty::ObservedAt);
        assert_eq!(v["sum"], json!([[160.0, "2020-07-31T00:00:00Z", "2020-08-31T00:00:00Z"]]));
    }

    #[test]
    fn datasets_and_tombstones() {
        let mut other = inst(json!(10), "2020-08-01T12:00:00Z");
        other.attr.set_dataset_id(Some("urn:d".into()));
        let mut gone = inst(Value::Null, "2020-08-01T12:00:00Z");
        gone.deleted_at = Some(1);
        let list = vec![inst(json!(1), "2020-08-01T12:00:00Z"), inst(json!(2), "2020-08-01T12:00:00Z"), other, gone];
        let range = Range { start: t("2020-08-01T12:00:00Z"), end: t("2020-08-01T12:00:00Z") };
        let v = attribute(&list, &aggr("totalCount", None), range, TimeProperty::ObservedAt);
        assert_eq!(v[0]["totalCount"][0][0], json!(2));
        assert_eq!(v[1]["datasetId"], "urn:d");
        assert_eq!(v[1]["totalCount"][0][0], json!(1));
    }
}
