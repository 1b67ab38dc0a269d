//! Reading a listing from the page's text without parsing the page: for a selection of names
//! ending in a wildcard, a serde walk skips what lies outside the selection and hands back
//! each item as raw text, so a large response never exists as one parsed tree.

use crate::jsonpath::Path;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The items `select` picks from a page's text, when it is a path of names ending in a
/// wildcard and the value there is an array; None otherwise (the page must be parsed).
pub(super) fn select_text<'a>(text: &'a str, select: &Path) -> Option<Vec<&'a RawValue>> {
    let names = select.streamable()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Walk { names: &names }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// The value a path of names (`$`, `$.data`) picks from a page's text: `Some(None)` when there
/// is none there, `None` for any other path (the page must be parsed). A document of one wide
/// object is read this way without a parsed tree of it.
pub(super) fn select_one<'a>(text: &'a str, select: &Path) -> Option<Option<&'a RawValue>> {
    let names = select.names()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let found = One { names: &names }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(found)
}

/// Walks down `names` through objects and takes the value found there as text; everything
/// else is skipped unparsed.
struct One<'p> {
    names: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for One<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.names.is_empty() {
            return <&RawValue>::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for One<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match self.names.split_first() {
                // A repeated name: the last one counts, as in a parsed object.
                Some((first, rest)) if *first == k => {
                    found = map.next_value_seed(One { names: rest })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Walks down `names` through objects and collects the elements of the array found there as
/// text; everything else is skipped unparsed. `None`: no array there.
struct Walk<'p> {
    names: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Vec<&'de RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Vec<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.names.is_empty() {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                out.push(raw);
            }
            return Ok(Some(out));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match self.names.split_first() {
                // A repeated name: the last one counts, as in a parsed object.
                Some((first, rest)) if *first == k => {
                    found = map.next_value_seed(Walk { names: rest })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}
