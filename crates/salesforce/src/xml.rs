//! A small XML tree for Bulk API 1.0 bodies (jobInfo, batchInfo, results, errors), and
//! the writer for job requests. Namespaces are ignored: elements are matched by local name.

use quick_xml::Reader;
use quick_xml::events::Event;

/// One XML element: local name, concatenated text and child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (no namespace prefix).
    pub name: String,
    /// Text content directly inside the element.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Whether the element carried `xsi:nil="true"`.
    pub nil: bool,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name` (`None` when missing or `xsi:nil`).
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).filter(|c| !c.nil).map(|c| c.text.clone())
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parse failure.
#[derive(Debug, thiserror::Error)]
#[error("invalid XML: {0}")]
pub struct XmlError(String);

fn local_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => name.into_owned(),
    }
}

fn is_nil(start: &quick_xml::events::BytesStart<'_>) -> bool {
    start
        .attributes()
        .flatten()
        .any(|a| local_name(a.key.as_ref()) == "nil" && a.value.as_ref() == b"true")
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                stack.push(Element {
                    name: local_name(start.name().as_ref()),
                    nil: is_nil(&start),
                    ..Element::default()
                });
            }
            Ok(Event::Empty(start)) => {
                let element = Element {
                    name: local_name(start.name().as_ref()),
                    nil: is_nil(&start),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Ok(Event::Text(t)) => {
                if let Some(top) = stack.last_mut() {
                    let decoded = t.unescape().map_err(|e| XmlError(e.to_string()))?;
                    top.text.push_str(&decoded);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t.into_inner()));
                }
            }
            Ok(Event::End(_)) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Ok(Event::Eof) => return Err(XmlError("no root element".into())),
            Ok(_) => {}
            Err(e) => return Err(XmlError(e.to_string())),
        }
    }
}

/// Escapes text for an XML element body.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_and_nil() {
        let root = parse(r#"<?xml version="1.0"?><results xmlns="x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><result><id>001</id><success>true</success><errors/></result><result><id xsi:nil="true"/><success>false</success><errors><message>a &amp; b</message></errors></result></results>"#)
            .expect("valid xml");
        assert_eq!(root.name, "results");
        let results: Vec<_> = root.children_named("result").collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].child_text("id").as_deref(), Some("001"));
        assert_eq!(results[1].child_text("id"), None);
        assert_eq!(
            results[1]
                .child("errors")
                .and_then(|e| e.child_text("message"))
                .as_deref(),
            Some("a & b")
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("not xml").is_err());
        assert!(parse("").is_err());
    }
}
