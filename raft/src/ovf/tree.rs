//! A small element tree over quick-xml's events: enough XML for OVF documents (names as
//! written, with their prefix; attributes; text; children; where each element lies in the
//! source), so that the mapping in `read.rs` works on a tree and can cut unknown elements
//! out of the source verbatim.

use crate::error::quote;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use super::OvfError;

#[derive(Debug, Clone, Default)]
pub(super) struct Element {
    /// As written, prefix included (`rasd:Caption`).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    /// The text directly inside the element, references resolved.
    pub text: String,
    pub children: Vec<Element>,
    /// Where the element starts (its `<`), as a line number and a byte offset, and the byte
    /// offset just after its end tag.
    pub line: usize,
    pub start: usize,
    pub end: usize,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The prefix of the element's name and of each attribute, through the whole subtree.
    pub fn prefixes(&self, out: &mut Vec<String>) {
        let names = std::iter::once(self.name.as_str()).chain(self.attrs.iter().map(|(k, _)| k.as_str()));
        for n in names {
            if let Some((p, _)) = n.split_once(':') {
                if p != "xmlns" && !out.iter().any(|o| o == p) {
                    out.push(p.to_string());
                }
            }
        }
        for c in &self.children {
            c.prefixes(out);
        }
    }

    /// Whether the subtree declares this namespace prefix itself.
    pub fn declares(&self, prefix: &str) -> bool {
        let key = format!("xmlns:{prefix}");
        self.attr(&key).is_some() || self.children.iter().any(|c| c.declares(prefix))
    }
}

/// Counts lines up to byte offsets that only grow.
struct Lines<'a> {
    src: &'a str,
    at: usize,
    line: usize,
}

impl Lines<'_> {
    fn line_of(&mut self, offset: usize) -> usize {
        if offset < self.at {
            return line_of(self.src, offset);
        }
        self.line += self.src.as_bytes()[self.at..offset].iter().filter(|&&b| b == b'\n').count();
        self.at = offset;
        self.line
    }
}

pub(super) fn line_of(src: &str, offset: usize) -> usize {
    1 + src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count()
}

fn syntax(src: &str, byte: u64, message: impl Into<String>) -> OvfError {
    OvfError::Syntax { byte, line: line_of(src, byte as usize), message: message.into() }
}

/// Parses a whole document into its root element.
/// The largest OVF document read: one VM with every device the limits allow is a few tens of
/// KiB.
pub const MAX_OVF_BYTES: usize = 1 << 20;
/// The deepest nesting of elements read: OVF documents nest about six deep. The tree is freed
/// recursively, so a deeper one would spend the thread's stack.
pub const MAX_OVF_DEPTH: usize = 32;

pub(super) fn parse(src: &str) -> Result<Element, OvfError> {
    if src.len() > MAX_OVF_BYTES {
        return Err(OvfError::TooLarge { bytes: src.len(), max: MAX_OVF_BYTES });
    }
    let mut reader = Reader::from_str(src);
    let mut lines = Lines { src, at: 0, line: 1 };
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| syntax(src, reader.error_position(), e.to_string()))?;
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut el = Element {
                    name: e.name().as_ref().to_string(),
                    line: lines.line_of(before),
                    start: before,
                    ..Element::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|err| syntax(src, before as u64, err.to_string()))?;
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|err| syntax(src, before as u64, err.to_string()))?;
                    el.attrs.push((a.key.as_ref().to_string(), value.into_owned()));
                }
                if root.is_some() && stack.is_empty() {
                    return Err(syntax(src, before as u64, format!("a second root element '{}'", quote(&el.name))));
                }
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= MAX_OVF_DEPTH {
                        return Err(syntax(
                            src,
                            before as u64,
                            format!("elements nest deeper than {MAX_OVF_DEPTH} levels"),
                        ));
                    }
                    stack.push(el);
                } else {
                    el.end = after;
                    close(el, &mut stack, &mut root);
                }
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches its start tag.
                let mut el = stack.pop().ok_or_else(|| syntax(src, before as u64, "an end tag without a start tag"))?;
                el.end = after;
                close(el, &mut stack, &mut root);
            }
            Event::Text(t) => text(src, before, &mut stack, &t.xml10_content())?,
            Event::CData(t) => {
                let t = t.into_inner();
                text(src, before, &mut stack, &t)?
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => s.to_string(),
                        None => return Err(syntax(src, before as u64, format!("unknown entity '&{};'", &*r))),
                    },
                    Err(e) => return Err(syntax(src, before as u64, e.to_string())),
                };
                text(src, before, &mut stack, &resolved)?
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(syntax(
            src,
            src.len() as u64,
            format!("element '{}' opened on line {} is never closed", quote(&open.name), open.line),
        ));
    }
    root.ok_or_else(|| syntax(src, src.len() as u64, "the document has no element"))
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn text(src: &str, at: usize, stack: &mut [Element], t: &str) -> Result<(), OvfError> {
    match stack.last_mut() {
        Some(el) => el.text.push_str(t),
        None if t.trim().is_empty() => {}
        None => return Err(syntax(src, at as u64, "text outside the root element")),
    }
    Ok(())
}
