//! GeoJSON geometry validation for GeoProperty values (RFC 7946 §3.1).
//!
//! Checking shape here keeps invalid geometries out of the store, so geo-queries and the
//! MongoDB 2dsphere index never meet one.

use serde_json::Value;

/// Validates a GeoJSON geometry object; the error says what is wrong.
pub fn validate_geometry(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("a GeoJSON geometry must be a JSON object")?;
    let ty = obj.get("type").and_then(Value::as_str).ok_or("GeoJSON geometry without a type")?;
    if ty == "GeometryCollection" {
        let geoms =
            obj.get("geometries").and_then(Value::as_array).ok_or("GeometryCollection without a geometries array")?;
        for g in geoms {
            validate_geometry(g)?;
        }
        return Ok(());
    }
    let coords = obj.get("coordinates").ok_or_else(|| format!("{ty} without coordinates"))?;
    match ty {
        "Point" => position(coords),
        "MultiPoint" => each(coords, position),
        "LineString" => line(coords),
        "MultiLineString" => each(coords, line),
        "Polygon" => polygon(coords),
        "MultiPolygon" => each(coords, polygon),
        other => Err(format!("{other} is not a GeoJSON geometry type")),
    }
}

/// True when `v` looks like a GeoJSON geometry (used to recognise concise GeoProperties).
pub fn looks_like_geometry(v: &Value) -> bool {
    let Some(obj) = v.as_object() else {
        return false;
    };
    matches!(
        obj.get("type").and_then(Value::as_str),
        Some(
            "Point"
                | "MultiPoint"
                | "LineString"
                | "MultiLineString"
                | "Polygon"
                | "MultiPolygon"
                | "GeometryCollection"
        )
    ) && (obj.contains_key("coordinates") || obj.contains_key("geometries"))
}

fn each(v: &Value, f: fn(&Value) -> Result<(), String>) -> Result<(), String> {
    let items = v.as_array().ok_or("coordinates must be an array")?;
    if items.is_empty() {
        return Err("coordinates must not be empty".into());
    }
    items.iter().try_for_each(f)
}

fn position(v: &Value) -> Result<(), String> {
    let p = v.as_array().ok_or("a position must be an array of numbers")?;
    if !(2..=3).contains(&p.len()) {
        return Err("a position has two or three numbers".into());
    }
    let nums: Vec<f64> = p.iter().filter_map(Value::as_f64).collect();
    if nums.len() != p.len() || nums.iter().any(|n| !n.is_finite()) {
        return Err("a position must contain only numbers".into());
    }
    if !(-180.0..=180.0).contains(&nums[0]) || !(-90.0..=90.0).contains(&nums[1]) {
        return Err(format!("position [{}, {}] is outside longitude/latitude range", nums[0], nums[1]));
    }
    Ok(())
}

fn line(v: &Value) -> Result<(), String> {
    let pts = v.as_array().ok_or("a LineString must be an array of positions")?;
    if pts.len() < 2 {
        return Err("a LineString needs at least two positions".into());
    }
    pts.iter().try_for_each(position)
}

fn polygon(v: &Value) -> Result<(), String> {
    let rings = v.as_array().ok_or("a Polygon must be an array of linear rings")?;
    if rings.is_empty() {
        return Err("a Polygon needs at least one linear ring".into());
    }
    for ring in rings {
        let pts = ring.as_array().ok_or("a linear ring must be an array of positions")?;
        if pts.len() < 4 {
            return Err("a linear ring needs at least four positions".into());
        }
        pts.iter().try_for_each(position)?;
        if pts.first() != pts.last() {
            return Err("a linear ring must be closed (first and last positions equal)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_valid_and_rejects_invalid_geometries() {
        assert!(validate_geometry(&json!({"type": "Point", "coordinates": [1.0, 2.0]})).is_ok());
        assert!(validate_geometry(&json!({"type": "Point", "coordinates": [1.0]})).is_err());
        assert!(validate_geometry(&json!({"type": "Point", "coordinates": [200, 2]})).is_err());
        assert!(validate_geometry(&json!({"type": "LineString", "coordinates": [[1, 2]]})).is_err());
        let square = json!([[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]);
        assert!(validate_geometry(&json!({"type": "Polygon", "coordinates": square})).is_ok());
        let open = json!([[[0, 0], [1, 0], [1, 1], [0, 1]]]);
        assert!(validate_geometry(&json!({"type": "Polygon", "coordinates": open})).is_err());
        assert!(validate_geometry(&json!({"type": "Circle", "coordinates": [1, 2]})).is_err());
        assert!(validate_geometry(&json!({"type": "MultiPolygon", "coordinates": [square]})).is_ok());
        assert!(
            validate_geometry(&json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [1, 2]}]}))
            .is_ok()
        );
    }
}
