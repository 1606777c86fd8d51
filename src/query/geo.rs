//! NGSI-LD geo-queries (GS CIM 009 §4.10 and §4.11): parsing of `georel`, `geometry`,
//! `coordinates` and `geoproperty` (URL parameters or a `geoQ` object), name resolution with the
//! request's context, and evaluation against a stored entity.
//!
//! The embedded store and the MongoDB backend must return the same entities, and MongoDB's
//! 2dsphere index works on a sphere. So this module measures distances with the haversine
//! formula (to the closest point of the entity's geometry), and evaluates the DE-9IM relations
//! with `geo::Relate` on geometries whose edges were first densified along great circles, so that
//! a long edge bulges towards the pole as it does on the sphere. Bounding boxes (for an R-tree
//! pre-filter) are computed on the sphere too, so the pre-filter never drops an entity that the
//! exact test would keep. Geometries that cross the antimeridian are not handled: lon/lat is
//! treated as a plane between ±180°.

use std::fmt;

use geo::algorithm::validation::{InvalidMultiPolygon, InvalidPolygon};
use geo::{
    CoordsIter, Densify, Distance, Geometry, Haversine, Intersects, LineString, MultiLineString, MultiPoint,
    MultiPolygon, Point, Polygon, Relate, Validation,
};
use serde_json::{Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::geo::validate_geometry;
use crate::model::{AttrKind, Entity};

/// The longest edge, in metres, left after densifying along great circles.
const MAX_SEGMENT_M: f64 = 10_000.0;
/// Slack added to every bounding box, in degrees (about 1 cm), to absorb rounding.
const BOX_MARGIN_DEG: f64 = 1e-7;
/// The geometry types a geo-query may use.
const GEOMETRIES: [&str; 6] = ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];

/// A geo-relationship (`georel`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// Distances in metres on the sphere; at least one of the two is present.
    Near {
        max: Option<f64>,
        min: Option<f64>,
    },
    Within,
    Contains,
    Intersects,
    Overlaps,
    Equals,
    Disjoint,
}

impl fmt::Display for GeoRel {
    /// Writes the georel as NGSI-LD spells it, e.g. `near;maxDistance==2000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeoRel::Near { max, min } => {
                f.write_str("near")?;
                if let Some(m) = max {
                    write!(f, ";maxDistance=={m}")?;
                }
                if let Some(m) = min {
                    write!(f, ";minDistance=={m}")?;
                }
                Ok(())
            }
            GeoRel::Within => f.write_str("within"),
            GeoRel::Contains => f.write_str("contains"),
            GeoRel::Intersects => f.write_str("intersects"),
            GeoRel::Overlaps => f.write_str("overlaps"),
            GeoRel::Equals => f.write_str("equals"),
            GeoRel::Disjoint => f.write_str("disjoint"),
        }
    }
}

/// A parsed geo-query with the geoproperty name as written.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    pub rel: GeoRel,
    /// The reference geometry in lon/lat degrees.
    pub geometry: Geometry<f64>,
    /// The GeoProperty to test, as written (default `location`).
    pub geoproperty: String,
}

fn bad(detail: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(detail)
}

/// Parses a `georel` value such as `within` or `near;maxDistance==2000;minDistance==100`.
fn parse_georel(src: &str) -> NgsiResult<GeoRel> {
    let mut parts = src.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let rel = match name {
        "near" => GeoRel::Near { max: None, min: None },
        "within" => GeoRel::Within,
        "contains" => GeoRel::Contains,
        "intersects" => GeoRel::Intersects,
        "overlaps" => GeoRel::Overlaps,
        "equals" => GeoRel::Equals,
        "disjoint" => GeoRel::Disjoint,
        "" => return Err(bad("georel is empty")),
        other => {
            return Err(bad(format!(
                "invalid georel {other:?}: expected near, within, contains, intersects, overlaps, equals or disjoint"
            )));
        }
    };
    let GeoRel::Near { mut max, mut min } = rel else {
        if let Some(extra) = parts.next() {
            return Err(bad(format!("georel {name} takes no modifier, got {extra:?}")));
        }
        return Ok(rel);
    };
    for part in parts {
        let Some((key, value)) = part.split_once("==") else {
            return Err(bad(format!(
                "invalid georel modifier {part:?}: expected maxDistance==<metres> or minDistance==<metres>"
            )));
        };
        let slot = match key.trim() {
            "maxDistance" => &mut max,
            "minDistance" => &mut min,
            other => {
                return Err(bad(format!("invalid georel modifier {other:?}: expected maxDistance or minDistance")));
            }
        };
        if slot.is_some() {
            return Err(bad(format!("georel gives {} twice", key.trim())));
        }
        let d = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| bad(format!("{} must be a non-negative number of metres, got {value:?}", key.trim())))?;
        *slot = Some(d);
    }
    match (max, min) {
        (None, None) => Err(bad("georel near needs maxDistance==<metres> or minDistance==<metres>")),
        (Some(a), Some(b)) if b > a => Err(bad(format!("minDistance {b} is greater than maxDistance {a}"))),
        _ => Ok(GeoRel::Near { max, min }),
    }
}

/// The canonical spelling of a query geometry type (matched without regard to case).
fn geometry_name(src: &str) -> NgsiResult<&'static str> {
    let src = src.trim();
    GEOMETRIES.iter().find(|g| g.eq_ignore_ascii_case(src)).copied().ok_or_else(|| {
        bad(format!(
            "invalid geometry {src:?}: expected Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon"
        ))
    })
}

/// Whether a polygon defect is only a ring crossing itself.
fn crossing_ring(e: &InvalidPolygon) -> bool {
    matches!(e, InvalidPolygon::SelfIntersection(_))
}

/// Builds and validates the reference geometry, then checks it against the georel.
fn build(rel: GeoRel, geometry: &str, coordinates: Value, geoproperty: Option<&str>) -> NgsiResult<GeoQuery> {
    let name = geometry_name(geometry)?;
    let v = json!({"type": name, "coordinates": coordinates});
    validate_geometry(&v).map_err(|e| bad(format!("invalid coordinates for a {name}: {e}")))?;
    let geom = convert(&v).ok_or_else(|| bad(format!("invalid coordinates for a {name}")))?;
    // A ring that crosses itself is tolerated: RFC 7946 does not forbid it, GS CIM 009 only
    // says polygons should not self-intersect, and entity GeoProperties are accepted with such
    // rings, so refusing the same polygon as a query geometry would make an entity unreachable
    // by its own location (ETSI 019_11_01 queries with equals on it). Relate still evaluates
    // it, under the panic guard of `matches_exact`. Other defects (overlapping members, holes
    // outside the shell) are refused.
    let polygon_error = match &geom {
        Geometry::Polygon(p) => p.validation_errors().into_iter().find(|e| !crossing_ring(e)).map(|e| e.to_string()),
        Geometry::MultiPolygon(p) => p
            .validation_errors()
            .into_iter()
            .find(|e| !matches!(e, InvalidMultiPolygon::InvalidPolygon(_, inner) if crossing_ring(inner)))
            .map(|e| e.to_string()),
        _ => None,
    };
    if let Some(e) = polygon_error {
        return Err(bad(format!("invalid {name}: {e}")));
    }
    match rel {
        GeoRel::Near { .. } if name != "Point" => {
            return Err(bad(format!("georel near needs a Point as geometry, got a {name}")));
        }
        GeoRel::Within if !matches!(name, "Polygon" | "MultiPolygon") => {
            return Err(bad(format!("georel within needs a Polygon or MultiPolygon as geometry, got a {name}")));
        }
        _ => {}
    }
    let geoproperty = match geoproperty.map(str::trim) {
        None | Some("") => "location".to_owned(),
        Some(g) => g.to_owned(),
    };
    Ok(GeoQuery { rel, geometry: geom, geoproperty })
}

fn coordinates_json(text: &str) -> NgsiResult<Value> {
    serde_json::from_str(text.trim()).map_err(|e| NgsiError::invalid(format!("coordinates is not valid JSON: {e}")))
}

/// Parses a geo-query from the URL parameters `georel`, `geometry`, `coordinates` (the JSON text
/// of the coordinates array) and `geoproperty`.
pub fn parse(georel: &str, geometry: &str, coordinates: &str, geoproperty: Option<&str>) -> NgsiResult<GeoQuery> {
    let rel = parse_georel(georel)?;
    let coordinates = coordinates_json(coordinates)?;
    build(rel, geometry, coordinates, geoproperty)
}

/// Parses the `geoQ` member of a Query or Subscription body:
/// `{"georel", "geometry", "coordinates" (a JSON array or its text), "geoproperty"}`.
pub fn from_json(v: &Value) -> NgsiResult<GeoQuery> {
    let obj = v.as_object().ok_or_else(|| bad("geoQ must be a JSON object"))?;
    let text = |key: &str| -> NgsiResult<&str> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(bad(format!("geoQ.{key} must be a string"))),
            None => Err(bad(format!("geoQ needs a {key} member"))),
        }
    };
    let rel = parse_georel(text("georel")?)?;
    let geometry = text("geometry")?;
    let coordinates = match obj.get("coordinates") {
        Some(Value::String(s)) => coordinates_json(s)?,
        Some(a @ Value::Array(_)) => a.clone(),
        Some(_) => return Err(bad("geoQ.coordinates must be an array (or its JSON text)")),
        None => return Err(bad("geoQ needs a coordinates member")),
    };
    let geoproperty = match obj.get("geoproperty") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(bad("geoQ.geoproperty must be a string")),
    };
    build(rel, geometry, coordinates, geoproperty)
}

impl GeoQuery {
    /// Expands the geoproperty name with `ctx` and prepares the reference geometry.
    pub fn resolve(&self, ctx: &Context) -> ResolvedGeo {
        let point = match &self.geometry {
            Geometry::Point(p) => Some(*p),
            _ => None,
        };
        let query = match self.rel {
            GeoRel::Near { .. } => self.geometry.clone(),
            _ => densify(&self.geometry),
        };
        let query_box = sphere_bbox(&self.geometry).unwrap_or([-180.0, -90.0, 180.0, 90.0]);
        let search_box = match self.rel {
            GeoRel::Near { max: Some(max), .. } => point.map(|p| cap_box(p, max)),
            GeoRel::Near { max: None, .. } | GeoRel::Disjoint => None,
            _ => Some(query_box),
        };
        ResolvedGeo { rel: self.rel, geoproperty: ctx.expand(&self.geoproperty), query, query_box, search_box, point }
    }
}

/// A geo-query with the geoproperty expanded and the reference geometry densified, ready to be
/// evaluated on many entities.
#[derive(Debug, Clone)]
pub struct ResolvedGeo {
    rel: GeoRel,
    geoproperty: String,
    /// The reference geometry, densified along great circles (kept as is for near).
    query: Geometry<f64>,
    /// The spherical bounding box of the reference geometry.
    query_box: [f64; 4],
    /// What [`ResolvedGeo::search_box`] returns.
    search_box: Option<[f64; 4]>,
    /// The reference point of near.
    point: Option<Point<f64>>,
}

/// A stored Point read straight from its JSON text, skipping the generic JSON tree: most
/// GeoProperties are Points, and geo-queries read every candidate's geometry.
fn fast_point(text: &str) -> Option<Geometry<f64>> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
        coordinates: [f64; 2],
    }
    let p: P = serde_json::from_str(text).ok()?;
    (p.kind == "Point").then(|| Geometry::Point(geo::Point::new(p.coordinates[0], p.coordinates[1])))
}

/// The lon/lat position of a stored two-dimensional Point (its JSON text), exactly as
/// [`ResolvedGeo::near_distance`] reads it; `None` for any other geometry.
pub fn point_of(text: &str) -> Option<[f64; 2]> {
    match fast_point(text)? {
        Geometry::Point(p) => Some([p.x(), p.y()]),
        _ => None,
    }
}

impl ResolvedGeo {
    /// The expanded name of the GeoProperty the query tests.
    pub fn geoproperty(&self) -> &str {
        &self.geoproperty
    }

    /// The georel.
    pub fn rel(&self) -> GeoRel {
        self.rel
    }

    /// True when any instance of the entity's geoproperty (a GeoProperty) satisfies the georel.
    /// Entities without it never match, not even for disjoint.
    pub fn matches(&self, e: &Entity) -> bool {
        self.instances(e).any(|g| self.matches_geometry(&g))
    }

    /// A lon/lat bounding box `[min_lon, min_lat, max_lon, max_lat]` that every matching geometry
    /// intersects, for an R-tree pre-filter over [`bbox_of`]; `None` when the relation cannot be
    /// bounded (disjoint, near with only minDistance).
    pub fn search_box(&self) -> Option<[f64; 4]> {
        self.search_box
    }

    /// For near: the distance in metres from the reference point to the entity's geometry (the
    /// nearest instance that satisfies the distances, else the nearest), to order results by
    /// distance; `None` for other georels or without the geoproperty.
    pub fn distance(&self, e: &Entity) -> Option<f64> {
        let p = self.point?;
        let GeoRel::Near { max, min } = self.rel else {
            return None;
        };
        let ds: Vec<f64> = self.instances(e).map(|g| distance_to(p, &g)).collect();
        let within = |d: &&f64| max.is_none_or(|m| **d <= m) && min.is_none_or(|m| **d >= m);
        ds.iter().filter(within).copied().reduce(f64::min).or_else(|| ds.iter().copied().reduce(f64::min))
    }

    /// For near: the reference point and the distance bounds, for a store to answer from its
    /// spatial index.
    pub fn near_params(&self) -> Option<([f64; 2], Option<f64>, Option<f64>)> {
        let p = self.point?;
        match self.rel {
            GeoRel::Near { max, min } => Some(([p.x(), p.y()], max, min)),
            _ => None,
        }
    }

    /// For near: the smallest distance in metres among the instances within the bounds, or
    /// `None` when no instance is (the entity does not match). One pass over the instances.
    pub fn near_distance(&self, e: &Entity) -> Option<f64> {
        let p = self.point?;
        let GeoRel::Near { max, min } = self.rel else {
            return None;
        };
        self.instances(e)
            .map(|g| distance_to(p, &g))
            .filter(|d| max.is_none_or(|m| *d <= m) && min.is_none_or(|m| *d >= m))
            .reduce(f64::min)
    }

    /// The geometries of the entity's GeoProperty instances.
    fn instances<'a>(&'a self, e: &'a Entity) -> impl Iterator<Item = Geometry<f64>> + 'a {
        e.attrs
            .get(self.geoproperty.as_str())
            .into_iter()
            .flatten()
            .filter(|a| a.kind == AttrKind::GeoProperty)
            .filter_map(|a| fast_point(a.value_text()).or_else(|| convert(&a.value())))
    }

    /// The test for one geometry: the bounding boxes first, then the exact relation.
    fn matches_geometry(&self, g: &Geometry<f64>) -> bool {
        let Some(b) = sphere_bbox(g) else {
            return false;
        };
        match (self.rel, self.search_box) {
            (GeoRel::Disjoint, _) if !boxes_intersect(&b, &self.query_box) => true,
            (_, Some(sb)) if !boxes_intersect(&b, &sb) => false,
            _ => self.matches_exact(g),
        }
    }

    /// The relation itself, without any bounding-box shortcut.
    fn matches_exact(&self, g: &Geometry<f64>) -> bool {
        if let GeoRel::Near { max, min } = self.rel {
            let Some(p) = self.point else {
                return false;
            };
            let d = distance_to(p, g);
            return max.is_none_or(|m| d <= m) && min.is_none_or(|m| d >= m);
        }
        let dg = densify(g);
        // The same coordinates are equal whatever Relate makes of them: a ring that crosses
        // itself has no well-defined interior for it (ETSI 019_11_01).
        if self.rel == GeoRel::Equals && dg == self.query {
            return true;
        }
        // Relate is not proven panic-free on every invalid input; a stored geometry that breaks
        // it must not take a worker down, so such a geometry simply does not match.
        let Ok(m) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dg.relate(&self.query))) else {
            return false;
        };
        match self.rel {
            GeoRel::Within => m.is_within(),
            GeoRel::Contains => m.is_contains(),
            GeoRel::Intersects => m.is_intersects(),
            GeoRel::Overlaps => m.is_overlaps(),
            GeoRel::Equals => m.is_equal_topo(),
            GeoRel::Disjoint => m.is_disjoint(),
            GeoRel::Near { .. } => false,
        }
    }
}

/// The distance in metres on the sphere from `p` to the closest point of `g`, zero inside a
/// polygon. geo's `HaversineClosestPoint` misplaces the foot of the perpendicular on arcs longer
/// than a quarter circle, so arcs are measured here with vectors.
/// The distance in metres between two lon/lat points, as near-queries measure it.
pub fn point_distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    Haversine.distance(Point::new(a[0], a[1]), Point::new(b[0], b[1]))
}

/// Distances from one point to many, bit for bit those of [`point_distance`] (the same
/// haversine formula, operation for operation) with the origin's cosine computed once.
#[derive(Debug, Clone, Copy)]
pub struct DistanceFrom {
    origin: [f64; 2],
    cos_lat: f64,
}

impl DistanceFrom {
    pub fn new(origin: [f64; 2]) -> DistanceFrom {
        DistanceFrom { origin, cos_lat: origin[1].to_radians().cos() }
    }

    /// The distance in metres to `p`.
    pub fn to(&self, p: [f64; 2]) -> f64 {
        let theta2 = p[1].to_radians();
        let delta_theta = (p[1] - self.origin[1]).to_radians();
        let delta_lambda = (p[0] - self.origin[0]).to_radians();
        let a = (delta_theta / 2.0).sin().powi(2) + self.cos_lat * theta2.cos() * (delta_lambda / 2.0).sin().powi(2);
        let c = 2.0 * a.sqrt().asin();
        Haversine.radius() * c
    }
}

fn distance_to(p: Point<f64>, g: &Geometry<f64>) -> f64 {
    if let Geometry::Point(q) = g {
        return Haversine.distance(p, *q);
    }
    // Only the point-in-polygon step is planar; densified rings make it follow the sphere.
    let polygonal = matches!(g, Geometry::Polygon(_) | Geometry::MultiPolygon(_) | Geometry::GeometryCollection(_));
    if polygonal && densify(g).intersects(&p) {
        return 0.0;
    }
    let v = unit(p.0);
    let mut best = f64::INFINITY;
    let mut line = |l: &LineString<f64>| {
        if let [only] = l.0.as_slice() {
            best = best.min(angle(v, unit(*only)));
        }
        for w in l.0.windows(2) {
            best = best.min(arc_angle(v, unit(w[0]), unit(w[1])));
        }
    };
    visit_lines(g, &mut line);
    best * Haversine.radius()
}

/// Calls `f` on every linear piece of `g`; a point counts as a one-position line.
fn visit_lines(g: &Geometry<f64>, f: &mut impl FnMut(&LineString<f64>)) {
    match g {
        Geometry::Point(p) => f(&LineString::new(vec![p.0])),
        Geometry::MultiPoint(m) => m.iter().for_each(|p| f(&LineString::new(vec![p.0]))),
        Geometry::LineString(l) => f(l),
        Geometry::MultiLineString(m) => m.iter().for_each(f),
        Geometry::Polygon(p) => {
            f(p.exterior());
            p.interiors().iter().for_each(f);
        }
        Geometry::MultiPolygon(m) => m.iter().for_each(|p| {
            f(p.exterior());
            p.interiors().iter().for_each(&mut *f);
        }),
        Geometry::GeometryCollection(c) => c.iter().for_each(|g| visit_lines(g, f)),
        other => f(&LineString::new(other.coords_iter().collect())),
    }
}

/// The angle in radians between two unit vectors.
fn angle(a: V3, b: V3) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// The angle in radians from `p` to the closest point of the minor great-circle arc `a`–`b`.
fn arc_angle(p: V3, a: V3, b: V3) -> f64 {
    let ends = angle(p, a).min(angle(p, b));
    let n = cross(a, b);
    let len = norm(n);
    if len < 1e-15 {
        return ends;
    }
    let n = scale(n, 1.0 / len);
    // The foot of the perpendicular from p onto the great circle.
    let h = dot(p, n);
    let foot = [p[0] - h * n[0], p[1] - h * n[1], p[2] - h * n[2]];
    let flen = norm(foot);
    if flen < 1e-15 {
        return ends;
    }
    let foot = scale(foot, 1.0 / flen);
    if on_arc(a, foot, b, n) { angle(p, foot) } else { ends }
}

/// Whether `v`, a unit vector on the great circle with unit normal `n` = a×b, lies on the minor
/// arc from `a` to `b`.
fn on_arc(a: V3, v: V3, b: V3, n: V3) -> bool {
    dot(cross(a, v), n) >= 0.0 && dot(cross(v, b), n) >= 0.0
}

/// Densifies every edge along its great circle so that no piece is longer than 10 km. Returns
/// the geometry unchanged if densifying fails to give finite coordinates (antipodal edges).
fn densify(g: &Geometry<f64>) -> Geometry<f64> {
    let d = match g {
        Geometry::LineString(l) => Geometry::LineString(Haversine.densify(l, MAX_SEGMENT_M)),
        Geometry::MultiLineString(l) => Geometry::MultiLineString(Haversine.densify(l, MAX_SEGMENT_M)),
        Geometry::Polygon(p) => Geometry::Polygon(Haversine.densify(p, MAX_SEGMENT_M)),
        Geometry::MultiPolygon(p) => Geometry::MultiPolygon(Haversine.densify(p, MAX_SEGMENT_M)),
        Geometry::GeometryCollection(c) => {
            Geometry::GeometryCollection(c.iter().map(densify).collect::<Vec<_>>().into())
        }
        other => return other.clone(),
    };
    if d.coords_iter().all(|c| c.x.is_finite() && c.y.is_finite()) { d } else { g.clone() }
}

fn boxes_intersect(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

/// The bounding box of the spherical cap of radius `metres` around `p`. When the cap reaches a
/// pole or crosses the antimeridian, the box spans every longitude (a box cannot wrap).
fn cap_box(p: Point<f64>, metres: f64) -> [f64; 4] {
    let r = metres / Haversine.radius();
    let (lon, lat) = (p.x(), p.y());
    let dlat = r.to_degrees() + BOX_MARGIN_DEG;
    let (min_lat, max_lat) = (lat - dlat, lat + dlat);
    if max_lat >= 90.0 || min_lat <= -90.0 {
        return [-180.0, min_lat.max(-90.0), 180.0, max_lat.min(90.0)];
    }
    // The widest longitude of the cap, reached at its tangent meridians.
    let s = r.sin() / lat.to_radians().cos();
    if s >= 1.0 {
        return [-180.0, min_lat, 180.0, max_lat];
    }
    let dlon = s.asin().to_degrees() + BOX_MARGIN_DEG;
    if lon - dlon < -180.0 || lon + dlon > 180.0 {
        return [-180.0, min_lat, 180.0, max_lat];
    }
    [lon - dlon, min_lat, lon + dlon, max_lat]
}

/// A running lon/lat bounding box.
struct BoxAcc {
    b: [f64; 4],
    any: bool,
    full_lon: bool,
}

impl BoxAcc {
    fn new() -> BoxAcc {
        BoxAcc { b: [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY], any: false, full_lon: false }
    }

    fn point(&mut self, lon: f64, lat: f64) {
        self.any = true;
        self.b[0] = self.b[0].min(lon);
        self.b[1] = self.b[1].min(lat);
        self.b[2] = self.b[2].max(lon);
        self.b[3] = self.b[3].max(lat);
    }

    fn lat(&mut self, lat: f64) {
        self.b[1] = self.b[1].min(lat);
        self.b[3] = self.b[3].max(lat);
    }

    /// Adds the great-circle arc from `a` to `b`: its longitudes lie between the endpoints' (an
    /// arc shorter than 180° of longitude does not wrap), its latitudes may bulge past them.
    fn arc(&mut self, a: geo::Coord<f64>, b: geo::Coord<f64>) {
        self.point(a.x, a.y);
        self.point(b.x, b.y);
        if (b.x - a.x).abs() >= 180.0 - 1e-9 {
            self.full_lon = true;
        }
        let (va, vb) = (unit(a), unit(b));
        let n = cross(va, vb);
        let len = norm(n);
        if len < 1e-15 {
            if dot(va, vb) < 0.0 {
                // Antipodal endpoints: the arc is not defined, so take the whole sphere.
                self.full_lon = true;
                self.lat(-90.0);
                self.lat(90.0);
            }
            return;
        }
        let n = scale(n, 1.0 / len);
        // The northernmost point of the great circle: the pole's projection onto its plane.
        let top = [-n[2] * n[0], -n[2] * n[1], 1.0 - n[2] * n[2]];
        let tlen = norm(top);
        if tlen < 1e-15 {
            return;
        }
        let top = scale(top, 1.0 / tlen);
        for v in [top, scale(top, -1.0)] {
            if on_arc(va, v, vb, n) {
                self.lat(v[2].clamp(-1.0, 1.0).asin().to_degrees());
            }
        }
    }

    fn line(&mut self, l: &LineString<f64>) {
        if let [only] = l.0.as_slice() {
            self.point(only.x, only.y);
        }
        for w in l.0.windows(2) {
            self.arc(w[0], w[1]);
        }
    }

    fn geometry(&mut self, g: &Geometry<f64>) {
        match g {
            Geometry::Point(p) => self.point(p.x(), p.y()),
            Geometry::MultiPoint(m) => m.iter().for_each(|p| self.point(p.x(), p.y())),
            Geometry::LineString(l) => self.line(l),
            Geometry::MultiLineString(m) => m.iter().for_each(|l| self.line(l)),
            Geometry::Polygon(p) => self.polygon(p),
            Geometry::MultiPolygon(m) => m.iter().for_each(|p| self.polygon(p)),
            Geometry::GeometryCollection(c) => c.iter().for_each(|g| self.geometry(g)),
            Geometry::Line(l) => self.arc(l.start, l.end),
            other => other.coords_iter().for_each(|c| self.point(c.x, c.y)),
        }
    }

    fn polygon(&mut self, p: &Polygon<f64>) {
        self.line(p.exterior());
        p.interiors().iter().for_each(|r| self.line(r));
    }

    fn finish(self) -> Option<[f64; 4]> {
        if !self.any {
            return None;
        }
        let m = BOX_MARGIN_DEG;
        let [x0, y0, x1, y1] = self.b;
        let (x0, x1) = if self.full_lon { (-180.0, 180.0) } else { ((x0 - m).max(-180.0), (x1 + m).min(180.0)) };
        Some([x0, (y0 - m).max(-90.0), x1, (y1 + m).min(90.0)])
    }
}

type V3 = [f64; 3];

fn unit(c: geo::Coord<f64>) -> V3 {
    let (lon, lat) = (c.x.to_radians(), c.y.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}

fn scale(a: V3, k: f64) -> V3 {
    [a[0] * k, a[1] * k, a[2] * k]
}

/// The bounding box of a geometry whose edges are great-circle arcs.
fn sphere_bbox(g: &Geometry<f64>) -> Option<[f64; 4]> {
    let mut acc = BoxAcc::new();
    acc.geometry(g);
    acc.finish()
}

/// Converts a GeoJSON geometry value to geo types without range checks (`None` if malformed).
fn convert(v: &Value) -> Option<Geometry<f64>> {
    fn pos(v: &Value) -> Option<geo::Coord<f64>> {
        let a = v.as_array()?;
        if !(2..=3).contains(&a.len()) {
            return None;
        }
        Some(geo::Coord { x: a[0].as_f64()?, y: a[1].as_f64()? })
    }
    fn list<T>(v: &Value, f: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
        v.as_array()?.iter().map(f).collect()
    }
    fn line(v: &Value) -> Option<LineString<f64>> {
        let pts = list(v, pos)?;
        (pts.len() >= 2).then(|| LineString::new(pts))
    }
    fn polygon(v: &Value) -> Option<Polygon<f64>> {
        let mut rings = list(v, |r| {
            let pts = list(r, pos)?;
            (pts.len() >= 4).then(|| LineString::new(pts))
        })?
        .into_iter();
        let exterior = rings.next()?;
        Some(Polygon::new(exterior, rings.collect()))
    }
    let obj = v.as_object()?;
    let ty = obj.get("type")?.as_str()?;
    if ty == "GeometryCollection" {
        let items = list(obj.get("geometries")?, convert)?;
        return Some(Geometry::GeometryCollection(items.into()));
    }
    let c = obj.get("coordinates")?;
    Some(match ty {
        "Point" => Geometry::Point(Point::from(pos(c)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint::new(list(c, |p| pos(p).map(Point::from))?)),
        "LineString" => Geometry::LineString(line(c)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString::new(list(c, line)?)),
        "Polygon" => Geometry::Polygon(polygon(c)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon::new(list(c, polygon)?)),
        _ => return None,
    })
}

/// Converts a stored GeoJSON geometry value to geo types (`None` if it is not a valid GeoJSON
/// geometry with lon/lat positions).
pub fn to_geo(v: &Value) -> Option<Geometry<f64>> {
    validate_geometry(v).ok()?;
    convert(v)
}

/// The lon/lat bounding box `[min_lon, min_lat, max_lon, max_lat]` of a stored geometry value,
/// for indexing. Edges are great-circle arcs, so a long east-west edge widens the box towards
/// the pole; the box is the one [`ResolvedGeo::search_box`] is designed against.
pub fn bbox_of(v: &Value) -> Option<[f64; 4]> {
    sphere_bbox(&to_geo(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::jsonld::CORE;
    use crate::model::Attribute;
    use proptest::prelude::*;

    const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";
    const MADRID: [f64; 2] = [-3.7038, 40.4168];
    const BARCELONA: [f64; 2] = [2.1734, 41.3851];

    fn attr(value: Value, dataset_id: Option<&str>) -> Attribute {
        let mut a = Attribute::new(AttrKind::GeoProperty, &value, 0);
        a.set_dataset_id(dataset_id.map(str::to_owned));
        a
    }

    /// An entity whose `location` has the given instances.
    fn entity(instances: Vec<Attribute>) -> Entity {
        let mut attrs = crate::model::AttrMap::default();
        if !instances.is_empty() {
            attrs.insert(crate::model::intern(LOCATION), instances.into_iter().collect());
        }
        Entity {
            id: "urn:e:1".into(),
            types: [crate::model::intern("T")].into_iter().collect(),
            scope: None,
            attrs,
            created_at: 0,
            modified_at: 0,
        }
    }

    fn located(v: Value) -> Entity {
        entity(vec![attr(v, None)])
    }

    fn point(c: [f64; 2]) -> Value {
        json!({"type": "Point", "coordinates": c})
    }

    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
        json!({"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]})
    }

    fn coords(v: &Value) -> String {
        v["coordinates"].to_string()
    }

    fn q(georel: &str, geometry: &Value) -> ResolvedGeo {
        let ty = geometry["type"].as_str().unwrap();
        parse(georel, ty, &coords(geometry), None).unwrap_or_else(|e| panic!("{georel} {geometry}: {e}")).resolve(&CORE)
    }

    fn err(georel: &str, geometry: &str, coordinates: &str) -> NgsiError {
        parse(georel, geometry, coordinates, None).expect_err(&format!("{georel} {geometry} {coordinates}"))
    }

    #[test]
    fn parses_every_georel() {
        let p = "[1,2]";
        let poly = "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]";
        let near = |g: &str| parse(g, "Point", p, None).unwrap().rel;
        assert_eq!(near("near;maxDistance==2000"), GeoRel::Near { max: Some(2000.0), min: None });
        assert_eq!(near("near;minDistance==10.5"), GeoRel::Near { max: None, min: Some(10.5) });
        assert_eq!(
            near("near;maxDistance==2000;minDistance==100"),
            GeoRel::Near { max: Some(2000.0), min: Some(100.0) }
        );
        assert_eq!(
            near("near; minDistance==100 ;maxDistance==2000"),
            GeoRel::Near { max: Some(2000.0), min: Some(100.0) }
        );
        assert_eq!(near("near;maxDistance==0"), GeoRel::Near { max: Some(0.0), min: None });
        for (src, rel) in [
            ("within", GeoRel::Within),
            ("contains", GeoRel::Contains),
            ("intersects", GeoRel::Intersects),
            ("overlaps", GeoRel::Overlaps),
            ("equals", GeoRel::Equals),
            ("disjoint", GeoRel::Disjoint),
        ] {
            let g = parse(src, "Polygon", poly, None).unwrap();
            assert_eq!(g.rel, rel);
            assert_eq!(g.rel.to_string(), src);
            assert_eq!(g.geoproperty, "location");
        }
        assert_eq!(
            GeoRel::Near { max: Some(2000.0), min: Some(100.0) }.to_string(),
            "near;maxDistance==2000;minDistance==100"
        );
    }

    #[test]
    fn parses_every_geometry() {
        let g = |ty: &str, c: &str| parse("intersects", ty, c, Some("observationSpace")).unwrap();
        assert_eq!(g("Point", "[1, 2]").geometry, Geometry::Point(Point::new(1.0, 2.0)));
        assert_eq!(g("Point", " [1, 2, 30] ").geometry, Geometry::Point(Point::new(1.0, 2.0)), "altitude is ignored");
        assert!(matches!(g("MultiPoint", "[[1,2],[3,4]]").geometry, Geometry::MultiPoint(m) if m.0.len() == 2));
        assert!(matches!(g("LineString", "[[1,2],[3,4]]").geometry, Geometry::LineString(l) if l.0.len() == 2));
        assert!(
            matches!(g("MultiLineString", "[[[1,2],[3,4]],[[5,6],[7,8]]]").geometry, Geometry::MultiLineString(m) if m.0.len() == 2)
        );
        let holed = "[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]";
        assert!(matches!(g("Polygon", holed).geometry, Geometry::Polygon(p) if p.interiors().len() == 1));
        let multi = "[[[[0,0],[1,0],[1,1],[0,0]]],[[[5,5],[6,5],[6,6],[5,5]]]]";
        assert!(matches!(g("MultiPolygon", multi).geometry, Geometry::MultiPolygon(m) if m.0.len() == 2));
        assert_eq!(g("point", "[1,2]").geometry, Geometry::Point(Point::new(1.0, 2.0)), "type names ignore case");
        assert_eq!(g("Point", "[1,2]").geoproperty, "observationSpace");
        assert_eq!(parse("within", "Polygon", holed, Some("")).unwrap().geoproperty, "location");
    }

    #[test]
    fn rejects_every_error_with_a_detail() {
        use ErrorKind::*;
        let poly = "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]";
        for (georel, geometry, coordinates, kind, detail) in [
            ("", "Point", "[1,2]", BadRequestData, "georel is empty"),
            ("nearby", "Point", "[1,2]", BadRequestData, "invalid georel \"nearby\""),
            ("Within", "Polygon", poly, BadRequestData, "invalid georel"),
            ("near", "Point", "[1,2]", BadRequestData, "needs maxDistance"),
            ("near;maxDistance", "Point", "[1,2]", BadRequestData, "invalid georel modifier"),
            ("near;maxDistance=5", "Point", "[1,2]", BadRequestData, "invalid georel modifier"),
            ("near;maxDistance==abc", "Point", "[1,2]", BadRequestData, "non-negative number"),
            ("near;maxDistance==-1", "Point", "[1,2]", BadRequestData, "non-negative number"),
            ("near;maxDistance==inf", "Point", "[1,2]", BadRequestData, "non-negative number"),
            ("near;distance==5", "Point", "[1,2]", BadRequestData, "expected maxDistance or minDistance"),
            ("near;maxDistance==5;maxDistance==6", "Point", "[1,2]", BadRequestData, "twice"),
            ("near;maxDistance==5;minDistance==6", "Point", "[1,2]", BadRequestData, "greater than maxDistance"),
            ("within;maxDistance==5", "Polygon", poly, BadRequestData, "takes no modifier"),
            ("near;maxDistance==5", "Polygon", poly, BadRequestData, "needs a Point"),
            ("within", "Point", "[1,2]", BadRequestData, "needs a Polygon or MultiPolygon"),
            ("within", "LineString", "[[1,2],[3,4]]", BadRequestData, "needs a Polygon or MultiPolygon"),
            ("intersects", "Circle", "[1,2]", BadRequestData, "invalid geometry \"Circle\""),
            ("intersects", "GeometryCollection", "[]", BadRequestData, "invalid geometry"),
            ("intersects", "Point", "[1,2", InvalidRequest, "coordinates is not valid JSON"),
            ("intersects", "Point", "1,2", InvalidRequest, "coordinates is not valid JSON"),
            ("intersects", "Point", "[181,2]", BadRequestData, "outside longitude/latitude range"),
            ("intersects", "Point", "[1,-91]", BadRequestData, "outside longitude/latitude range"),
            ("intersects", "Point", "[1]", BadRequestData, "two or three numbers"),
            ("intersects", "Point", "[\"1\",2]", BadRequestData, "only numbers"),
            ("intersects", "Point", "{}", BadRequestData, "invalid coordinates for a Point"),
            ("intersects", "MultiPoint", "[]", BadRequestData, "must not be empty"),
            ("intersects", "LineString", "[[1,2]]", BadRequestData, "at least two positions"),
            ("intersects", "MultiLineString", "[[[1,2]]]", BadRequestData, "at least two positions"),
            ("intersects", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]", BadRequestData, "must be closed"),
            ("intersects", "Polygon", "[[[0,0],[1,0],[0,0]]]", BadRequestData, "at least four positions"),
            ("intersects", "Polygon", "[]", BadRequestData, "at least one linear ring"),
            (
                "within",
                "MultiPolygon",
                "[[[[0,0],[2,0],[2,2],[0,0]]],[[[0,0],[2,0],[2,2],[0,0]]]]",
                BadRequestData,
                "overlap",
            ),
            ("intersects", "Polygon", "[[[0,0],[1,1],[0,0],[0,0]]]", BadRequestData, "invalid Polygon"),
            ("within", "MultiPolygon", "[[[[0,0],[1,0],[1,1],[0,0]]],[[[0,1]]]]", BadRequestData, "at least four"),
        ] {
            let e = err(georel, geometry, coordinates);
            assert_eq!(e.kind, kind, "{georel} {geometry} {coordinates}: {e}");
            assert!(e.detail.contains(detail), "{georel} {geometry} {coordinates}: {}", e.detail);
        }
    }

    #[test]
    fn a_ring_crossing_itself_is_a_usable_query_geometry() {
        // The ETSI fixture polygon: its closing edge crosses its second edge near the start.
        let crossing = json!({"type": "Polygon", "coordinates": [[[13.2865906, 52.5648645], [13.2879639, 52.5648645],
            [13.2797241, 52.4988679], [13.477478, 52.4712703], [13.5049438, 52.5373084], [13.2865906, 52.5648645]]]});
        let bowtie = json!({"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]});
        assert!(q("equals", &crossing).matches(&located(crossing.clone())));
        assert!(!q("equals", &crossing).matches(&located(rect(13.3, 52.5, 13.4, 52.52))));
        assert!(q("equals", &bowtie).matches(&located(bowtie.clone())));
        assert!(q("intersects", &bowtie).matches(&located(point([0.3, 1.0]))));
        assert!(q("within", &crossing).matches(&located(point([13.4, 52.5]))));
        assert!(!q("within", &crossing).matches(&located(point([13.0, 52.0]))));
    }

    #[test]
    fn from_json_takes_arrays_or_text() {
        let a =
            from_json(&json!({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [1, 2]})).unwrap();
        assert_eq!(a.geometry, Geometry::Point(Point::new(1.0, 2.0)));
        assert_eq!(a.geoproperty, "location");
        let b = from_json(&json!({"georel": "within", "geometry": "Polygon",
            "coordinates": "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]", "geoproperty": "operationSpace"}))
        .unwrap();
        assert_eq!(b.rel, GeoRel::Within);
        assert_eq!(b.geoproperty, "operationSpace");
        for (v, detail) in [
            (json!([1]), "must be a JSON object"),
            (json!({"geometry": "Point", "coordinates": [1, 2]}), "needs a georel"),
            (json!({"georel": 1, "geometry": "Point", "coordinates": [1, 2]}), "georel must be a string"),
            (json!({"georel": "intersects", "coordinates": [1, 2]}), "needs a geometry"),
            (json!({"georel": "intersects", "geometry": "Point"}), "needs a coordinates"),
            (json!({"georel": "intersects", "geometry": "Point", "coordinates": 5}), "must be an array"),
            (
                json!({"georel": "intersects", "geometry": "Point", "coordinates": [1, 2], "geoproperty": 3}),
                "geoproperty",
            ),
            (json!({"georel": "intersects", "geometry": "Point", "coordinates": [200, 2]}), "outside"),
        ] {
            let e = from_json(&v).expect_err(&v.to_string());
            assert_eq!(e.kind, ErrorKind::BadRequestData);
            assert!(e.detail.contains(detail), "{v}: {}", e.detail);
        }
        let e = from_json(&json!({"georel": "intersects", "geometry": "Point", "coordinates": "[1,"})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn resolves_the_geoproperty_with_the_context() {
        assert_eq!(q("intersects", &point([1.0, 2.0])).geoproperty(), LOCATION);
        let g = parse("intersects", "Point", "[1,2]", Some("place")).unwrap().resolve(&CORE);
        assert_eq!(g.geoproperty(), "https://uri.etsi.org/ngsi-ld/default-context/place");
        let g = parse("intersects", "Point", "[1,2]", Some("observationSpace")).unwrap().resolve(&CORE);
        assert_eq!(g.geoproperty(), "https://uri.etsi.org/ngsi-ld/observationSpace");
        let mut e = located(point([1.0, 2.0]));
        let instances = e.attrs.shift_remove(LOCATION).unwrap();
        e.attrs.insert("https://uri.etsi.org/ngsi-ld/default-context/place".into(), instances);
        let g = parse("intersects", "Point", "[1,2]", Some("place")).unwrap().resolve(&CORE);
        assert!(g.matches(&e));
        assert!(!q("intersects", &point([1.0, 2.0])).matches(&e), "location is absent");
    }

    #[test]
    fn near_uses_haversine_metres() {
        let barcelona = located(point(BARCELONA));
        let g = q("near;maxDistance==506000", &point(MADRID));
        let d = g.distance(&barcelona).unwrap();
        assert!((d - 505_400.0).abs() < 1_000.0, "Madrid-Barcelona is about 505 km, got {d}");
        assert!(g.matches(&barcelona));
        assert!(!q("near;maxDistance==504000", &point(MADRID)).matches(&barcelona));
        assert!(q("near;minDistance==504000", &point(MADRID)).matches(&barcelona));
        assert!(!q("near;minDistance==506000", &point(MADRID)).matches(&barcelona));
        assert!(q("near;maxDistance==510000;minDistance==500000", &point(MADRID)).matches(&barcelona));
        assert!(!q("near;maxDistance==2000;minDistance==100", &point(MADRID)).matches(&barcelona));
        let madrid = located(point(MADRID));
        assert!(q("near;maxDistance==0", &point(MADRID)).matches(&madrid), "maxDistance is inclusive");
        assert!(q("near;minDistance==0", &point(MADRID)).matches(&madrid), "minDistance is inclusive");
        assert_eq!(q("near;maxDistance==10", &point(MADRID)).distance(&madrid), Some(0.0));
        assert_eq!(q("intersects", &point(MADRID)).distance(&madrid), None, "distance is only for near");
        assert_eq!(g.distance(&entity(vec![])), None);
        // near_distance decides the match and the distance in one pass.
        assert!(g.near_distance(&barcelona).is_some_and(|x| (x - d).abs() < 1e-6));
        assert_eq!(q("near;maxDistance==504000", &point(MADRID)).near_distance(&barcelona), None);
        assert_eq!(q("near;minDistance==10", &point(MADRID)).near_distance(&madrid), None);
        assert_eq!(q("intersects", &point(MADRID)).near_distance(&madrid), None);
    }

    #[test]
    fn near_measures_to_the_closest_point_of_lines_and_polygons() {
        // The great circle from (-10, 50) to (10, 50) passes 50.43° N at lon 0, 159 km from (0, 49).
        let line = located(json!({"type": "LineString", "coordinates": [[-10, 50], [10, 50]]}));
        let g = q("near;maxDistance==160000", &point([0.0, 49.0]));
        let d = g.distance(&line).unwrap();
        assert!((d - 159_000.0).abs() < 1_000.0, "got {d}");
        assert!(g.matches(&line));
        assert!(!q("near;maxDistance==150000", &point([0.0, 49.0])).matches(&line));
        let square = located(rect(0.0, 0.0, 1.0, 1.0));
        assert_eq!(q("near;maxDistance==1", &point([0.5, 0.5])).distance(&square), Some(0.0), "inside");
        assert!(!q("near;minDistance==1", &point([0.5, 0.5])).matches(&square));
        // One degree of longitude at the equator is about 111.2 km.
        let d = q("near;maxDistance==200000", &point([2.0, 0.5])).distance(&square).unwrap();
        assert!((d - 111_195.0).abs() < 100.0, "got {d}");
    }

    #[test]
    fn near_on_arcs_longer_than_a_quarter_circle() {
        // Found by the proptest: geo's HaversineClosestPoint put the foot of the perpendicular
        // on the far side of this arc and reported about 2,000 km; the nearest point is the end.
        let far_end = [-77.81255866998242, 62.79573852062686];
        let line =
            located(json!({"type": "LineString", "coordinates": [[105.91964878798908, 27.466167944439285], far_end]}));
        let from = [-65.46459279328793, 0.0];
        let g = q("near;maxDistance==2289267.576190063", &point(from));
        assert!(!g.matches(&line));
        let to_end = Haversine.distance(Point::new(from[0], from[1]), Point::new(far_end[0], far_end[1]));
        let d = g.distance(&line).unwrap();
        assert!((d - to_end).abs() < 1.0, "{d} vs {to_end}");
    }

    #[test]
    fn relations_on_points_lines_and_polygons() {
        let holed = json!({"type": "Polygon", "coordinates": [
            [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
            [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]]});
        let inside = located(point([2.0, 2.0]));
        let in_hole = located(point([5.0, 5.0]));
        let on_edge = located(point([0.0, 2.0]));
        let outside = located(point([20.0, 20.0]));
        let within = q("within", &holed);
        assert!(within.matches(&inside));
        assert!(!within.matches(&in_hole), "the hole is outside");
        assert!(!within.matches(&on_edge), "the boundary is not the interior");
        assert!(!within.matches(&outside));
        let intersects = q("intersects", &holed);
        assert!(intersects.matches(&inside) && intersects.matches(&on_edge));
        assert!(!intersects.matches(&in_hole) && !intersects.matches(&outside));
        let disjoint = q("disjoint", &holed);
        assert!(disjoint.matches(&in_hole) && disjoint.matches(&outside));
        assert!(!disjoint.matches(&inside) && !disjoint.matches(&on_edge));

        // Lines against the holed polygon.
        let crossing = located(json!({"type": "LineString", "coordinates": [[-1, 2], [3, 2]]}));
        let in_hole_line = located(json!({"type": "LineString", "coordinates": [[4.5, 5], [5.5, 5]]}));
        let inner_line = located(json!({"type": "LineString", "coordinates": [[1, 1], [3, 1]]}));
        assert!(intersects.matches(&crossing) && !within.matches(&crossing));
        assert!(disjoint.matches(&in_hole_line));
        assert!(within.matches(&inner_line));

        // contains: the entity's geometry contains the query geometry.
        let big = located(rect(0.0, 0.0, 10.0, 10.0));
        assert!(q("contains", &point([2.0, 2.0])).matches(&big));
        assert!(q("contains", &json!({"type": "LineString", "coordinates": [[1, 1], [2, 2]]})).matches(&big));
        assert!(!q("contains", &point([20.0, 2.0])).matches(&big));
        assert!(!q("contains", &point([5.0, 5.0])).matches(&located(holed.clone())), "hole");
        assert!(!q("contains", &rect(-1.0, -1.0, 11.0, 11.0)).matches(&big));

        // overlaps: same dimension, interiors meet, neither contains the other.
        assert!(q("overlaps", &rect(5.0, 5.0, 15.0, 15.0)).matches(&big));
        assert!(!q("overlaps", &rect(2.0, 2.0, 3.0, 3.0)).matches(&big), "contained is not overlapping");
        assert!(!q("overlaps", &rect(20.0, 20.0, 30.0, 30.0)).matches(&big));
        assert!(!q("overlaps", &point([2.0, 2.0])).matches(&big), "different dimensions");

        // equals: the same point set, whatever the starting vertex.
        let rotated = json!({"type": "Polygon", "coordinates": [[[10, 0], [10, 10], [0, 10], [0, 0], [10, 0]]]});
        assert!(q("equals", &rotated).matches(&big));
        assert!(!q("equals", &rect(0.0, 0.0, 10.0, 11.0)).matches(&big));
        assert!(q("equals", &point([2.0, 2.0])).matches(&inside));
        assert!(!q("equals", &point([2.0, 2.1])).matches(&inside));

        // Multi-geometries as query and entity.
        let two = json!({"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]], [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]]});
        assert!(q("within", &two).matches(&located(point([5.5, 5.5]))));
        assert!(!q("within", &two).matches(&located(point([3.0, 3.0]))));
        let pts = located(json!({"type": "MultiPoint", "coordinates": [[0.5, 0.5], [30, 30]]}));
        assert!(q("intersects", &two).matches(&pts) && !q("within", &two).matches(&pts));
        let lines = json!({"type": "MultiLineString", "coordinates": [[[-1, 0.5], [2, 0.5]], [[40, 40], [41, 41]]]});
        assert!(q("intersects", &lines).matches(&located(two.clone())));
        let mp = json!({"type": "MultiPoint", "coordinates": [[0.5, 0.5], [5.5, 5.5]]});
        assert!(q("contains", &mp).matches(&located(two)));
    }

    #[test]
    fn long_edges_follow_great_circles() {
        // Planar geometry misses this: the straight lon/lat line stays at 50° N.
        let box_ = rect(-0.5, 50.3, 0.5, 50.6);
        let planar_line: Geometry<f64> = LineString::from(vec![(-10.0, 50.0), (10.0, 50.0)]).into();
        assert!(!planar_line.relate(&to_geo(&box_).unwrap()).is_intersects());
        let line = json!({"type": "LineString", "coordinates": [[-10, 50], [10, 50]]});
        assert!(q("intersects", &box_).matches(&located(line.clone())));
        assert!(!q("disjoint", &box_).matches(&located(line.clone())));
        // The same with the roles swapped: the query line bulges into the entity's box.
        assert!(q("intersects", &line).matches(&located(box_.clone())));
        // The bounding box of the line reaches the bulge, so an R-tree keeps the entity.
        let b = bbox_of(&line).unwrap();
        assert!((b[3] - 50.431).abs() < 0.01, "{b:?}");
        assert!(boxes_intersect(&b, &q("intersects", &box_).search_box().unwrap()));
        // A polygon with a long northern edge at 50° N reaches 50.43° N in its middle.
        let wide = rect(-10.0, 40.0, 10.0, 50.0);
        assert!(q("within", &wide).matches(&located(point([0.0, 50.2]))));
        assert!(!q("within", &wide).matches(&located(point([0.0, 50.5]))));
    }

    #[test]
    fn any_instance_of_a_multi_attribute_may_match() {
        let e = entity(vec![attr(point([50.0, 50.0]), None), attr(point(BARCELONA), Some("urn:ds:gps"))]);
        let near = q("near;maxDistance==510000", &point(MADRID));
        assert!(near.matches(&e));
        let d = near.distance(&e).unwrap();
        assert!((d - 505_400.0).abs() < 1_000.0, "the matching instance gives the distance, got {d}");
        assert!(q("within", &rect(0.0, 40.0, 3.0, 42.0)).matches(&e));
        assert!(q("disjoint", &rect(0.0, 40.0, 3.0, 42.0)).matches(&e), "the other instance is disjoint");
        assert!(!q("intersects", &rect(-60.0, -60.0, -50.0, -50.0)).matches(&e));
        let far = q("near;minDistance==10000000", &point(MADRID));
        assert!(!far.matches(&e));
        assert!(far.distance(&e).is_some(), "the nearest instance when none matches");
    }

    #[test]
    fn entities_without_the_geoproperty_never_match() {
        let none = entity(vec![]);
        let everywhere = rect(-180.0, -90.0, 180.0, 90.0);
        for rel in ["within", "intersects", "disjoint", "contains", "overlaps", "equals"] {
            assert!(!q(rel, &everywhere).matches(&none), "{rel}");
        }
        assert!(!q("near;minDistance==0", &point(MADRID)).matches(&none));
        // An attribute of that name that is not a GeoProperty is ignored too.
        let mut plain = attr(point([1.0, 1.0]), None);
        plain.kind = AttrKind::Property;
        assert!(!q("disjoint", &rect(5.0, 5.0, 6.0, 6.0)).matches(&entity(vec![plain])));
        // So is a value that is not a geometry.
        assert!(!q("disjoint", &rect(5.0, 5.0, 6.0, 6.0)).matches(&located(json!("here"))));
    }

    #[test]
    fn search_boxes() {
        assert_eq!(q("disjoint", &rect(0.0, 0.0, 1.0, 1.0)).search_box(), None);
        assert_eq!(q("near;minDistance==10", &point(MADRID)).search_box(), None);
        let b = q("within", &rect(0.0, 0.0, 1.0, 1.0)).search_box().unwrap();
        assert!(b[0] < 0.0 && b[0] > -1e-6 && b[2] > 1.0 && b[2] < 1.0 + 1e-6, "{b:?}");
        assert!(b[1] < 0.0 && b[3] > 1.0 && b[3] < 1.001, "{b:?}");
        // About 111.2 km per degree of latitude; longitude degrees shrink with cos(lat).
        let b = q("near;maxDistance==111195", &point([0.0, 60.0])).search_box().unwrap();
        assert!((b[1] - 59.0).abs() < 1e-3 && (b[3] - 61.0).abs() < 1e-3, "{b:?}");
        assert!((b[2] - 2.0).abs() < 0.02 && (b[0] + 2.0).abs() < 0.02, "{b:?}");
        assert_eq!(q("near;maxDistance==200000", &point([0.0, 89.0])).search_box().unwrap()[0], -180.0, "pole");
        let b = q("near;maxDistance==200000", &point([179.5, 0.0])).search_box().unwrap();
        assert_eq!((b[0], b[2]), (-180.0, 180.0), "antimeridian");
        let b = q("near;maxDistance==30000000", &point([0.0, 0.0])).search_box().unwrap();
        assert_eq!(b, [-180.0, -90.0, 180.0, 90.0]);
    }

    #[test]
    fn conversions() {
        assert_eq!(to_geo(&point([1.0, 2.0])), Some(Geometry::Point(Point::new(1.0, 2.0))));
        assert!(to_geo(&json!({"type": "Point", "coordinates": [500, 2]})).is_none());
        assert!(to_geo(&json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]})).is_none());
        assert!(to_geo(&json!("Point")).is_none());
        let gc = json!({"type": "GeometryCollection", "geometries": [point([1.0, 2.0]), rect(0.0, 0.0, 1.0, 1.0)]});
        assert!(matches!(to_geo(&gc), Some(Geometry::GeometryCollection(c)) if c.0.len() == 2));
        assert!(q("intersects", &point([0.5, 0.5])).matches(&located(gc.clone())));
        let b = bbox_of(&gc).unwrap();
        assert!(b[0] < 0.0 && b[2] > 1.0 && b[3] > 2.0, "{b:?}");
        let b = bbox_of(&point([1.0, 2.0])).unwrap();
        assert!(b[0] < 1.0 && b[2] > 1.0 && (b[2] - b[0]) < 1e-6, "{b:?}");
        assert_eq!(bbox_of(&json!({"type": "GeometryCollection", "geometries": []})), None);
        // A meridian through the pole spans every longitude and reaches lat 90.
        let polar = json!({"type": "LineString", "coordinates": [[0, 80], [180, 80]]});
        assert_eq!(bbox_of(&polar).unwrap()[3], 90.0);
        assert_eq!(bbox_of(&polar).unwrap()[0], -180.0);
        // Southern bulge of a southern edge.
        let south = json!({"type": "LineString", "coordinates": [[-10, -50], [10, -50]]});
        assert!((bbox_of(&south).unwrap()[1] + 50.431).abs() < 0.01);
    }

    fn lonlat() -> impl Strategy<Value = (f64, f64)> {
        (-179.0..179.0f64, -85.0..85.0f64)
    }

    /// A point or a box (polygon) of up to 30° a side.
    fn geometry_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            lonlat().prop_map(|(x, y)| point([x, y])),
            (lonlat(), 0.01..30.0f64, 0.01..30.0f64).prop_map(|((x, y), w, h)| rect(
                x,
                y,
                (x + w).min(180.0),
                (y + h).min(89.0)
            )),
            (lonlat(), lonlat()).prop_map(|((x0, y0), (x1, y1))| json!({"type": "LineString",
                "coordinates": [[x0, y0], [x1, y1]]})),
        ]
    }

    fn query() -> impl Strategy<Value = ResolvedGeo> {
        let near = (lonlat(), 0.0..3_000_000.0f64, proptest::option::of(0.0..1.0f64)).prop_map(|((x, y), max, min)| {
            let georel = match min {
                Some(f) => format!("near;maxDistance=={max};minDistance=={}", max * f),
                None => format!("near;maxDistance=={max}"),
            };
            q(&georel, &point([x, y]))
        });
        let rel = (
            prop::sample::select(vec!["within", "contains", "intersects", "overlaps", "equals", "disjoint"]),
            geometry_value(),
        )
            .prop_filter_map("within needs a polygon", |(rel, g)| {
                (rel != "within" || g["type"] == "Polygon").then(|| q(rel, &g))
            });
        prop_oneof![near, rel]
    }

    proptest! {
        // No regression files: the tree is shared, and found cases become unit tests.
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// The R-tree pre-filter is sound: whatever matches lies in the search box, and the
        /// bounding-box shortcut inside `matches` agrees with the exact test.
        #[test]
        fn search_box_never_excludes_a_match(g in query(), v in geometry_value()) {
            let e = located(v.clone());
            let geom = to_geo(&v).unwrap();
            let exact = g.matches_exact(&geom);
            prop_assert_eq!(g.matches(&e), exact);
            if exact && let Some(sb) = g.search_box() {
                let b = bbox_of(&v).unwrap();
                prop_assert!(boxes_intersect(&b, &sb), "{:?} misses {:?} for {}", sb, b, v);
            }
        }

        /// Near against points: matching is exactly the haversine distance bound.
        #[test]
        fn near_points_agree_with_haversine(a in lonlat(), b in lonlat(), max in 0.0..5_000_000.0f64) {
            let g = q(&format!("near;maxDistance=={max}"), &point([a.0, a.1]));
            let d = Haversine.distance(Point::new(a.0, a.1), Point::new(b.0, b.1));
            prop_assert_eq!(g.matches(&located(point([b.0, b.1]))), d <= max);
        }
    }

    proptest! {
        /// The hoisted distance equals the one the general plan computes, bit for bit.
        #[test]
        fn distance_from_matches_point_distance(
            a in (-180.0f64..180.0, -90.0f64..90.0),
            b in (-180.0f64..180.0, -90.0f64..90.0),
        ) {
            let (a, b) = ([a.0, a.1], [b.0, b.1]);
            prop_assert_eq!(DistanceFrom::new(a).to(b).to_bits(), point_distance(a, b).to_bits());
            let near = [a[0] + (b[0] - a[0]) * 1e-4, a[1] + (b[1] - a[1]) * 1e-4];
            prop_assert_eq!(DistanceFrom::new(a).to(near).to_bits(), point_distance(a, near).to_bits());
        }
    }
}
