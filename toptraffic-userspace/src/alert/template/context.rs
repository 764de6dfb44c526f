//! The HTML contexts html/template's escaper tracks
//! (html/template/context.go), and how its errors print them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum St {
    Text,
    Tag,
    AttrName,
    AfterName,
    BeforeValue,
    HtmlCmt,
    Rcdata,
    Attr,
    Url,
    Srcset,
    Js,
    JsDqStr,
    JsSqStr,
    JsRegexp,
    JsBlockCmt,
    JsLineCmt,
    Css,
    CssDqStr,
    CssSqStr,
    CssDqUrl,
    CssSqUrl,
    CssUrl,
    CssBlockCmt,
    CssLineCmt,
}

/// js.go's jsCtx: whether a `/` after this point starts a regexp or
/// divides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum JsCtx {
    Regexp,
    DivOp,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Delim {
    None,
    DoubleQuote,
    SingleQuote,
    SpaceOrTagEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum UrlPart {
    None,
    PreQuery,
    QueryOrFrag,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum AttrKind {
    None,
    Script,
    ScriptType,
    Style,
    Url,
    Srcset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Element {
    None,
    Script,
    Style,
    Textarea,
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Ctx {
    pub(super) state: St,
    pub(super) delim: Delim,
    pub(super) url_part: UrlPart,
    pub(super) attr: AttrKind,
    pub(super) element: Element,
    pub(super) js_ctx: JsCtx,
}

impl St {
    /// context.go, isComment: text for the template's authors, which Go
    /// leaves out of the output.
    pub(super) fn is_comment(self) -> bool {
        matches!(
            self,
            St::HtmlCmt | St::JsBlockCmt | St::JsLineCmt | St::CssBlockCmt | St::CssLineCmt
        )
    }
}

impl Ctx {
    pub(super) const TEXT: Ctx = Ctx {
        state: St::Text,
        delim: Delim::None,
        url_part: UrlPart::None,
        attr: AttrKind::None,
        element: Element::None,
        js_ctx: JsCtx::Regexp,
    };

    pub(super) fn with_state(state: St, element: Element) -> Ctx {
        Ctx {
            state,
            element,
            ..Ctx::TEXT
        }
    }
}

/// context.go's String, as Go's escaping errors print contexts.
impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            St::Text => "stateText",
            St::Tag => "stateTag",
            St::AttrName => "stateAttrName",
            St::AfterName => "stateAfterName",
            St::BeforeValue => "stateBeforeValue",
            St::HtmlCmt => "stateHTMLCmt",
            St::Rcdata => "stateRCDATA",
            St::Attr => "stateAttr",
            St::Url => "stateURL",
            St::Srcset => "stateSrcset",
            St::Js => "stateJS",
            St::JsDqStr => "stateJSDqStr",
            St::JsSqStr => "stateJSSqStr",
            St::JsRegexp => "stateJSRegexp",
            St::JsBlockCmt => "stateJSBlockCmt",
            St::JsLineCmt => "stateJSLineCmt",
            St::Css => "stateCSS",
            St::CssDqStr => "stateCSSDqStr",
            St::CssSqStr => "stateCSSSqStr",
            St::CssDqUrl => "stateCSSDqURL",
            St::CssSqUrl => "stateCSSSqURL",
            St::CssUrl => "stateCSSURL",
            St::CssBlockCmt => "stateCSSBlockCmt",
            St::CssLineCmt => "stateCSSLineCmt",
        };
        let delim = match self.delim {
            Delim::None => "delimNone",
            Delim::DoubleQuote => "delimDoubleQuote",
            Delim::SingleQuote => "delimSingleQuote",
            Delim::SpaceOrTagEnd => "delimSpaceOrTagEnd",
        };
        let url = match self.url_part {
            UrlPart::None => "urlPartNone",
            UrlPart::PreQuery => "urlPartPreQuery",
            UrlPart::QueryOrFrag => "urlPartQueryOrFrag",
            UrlPart::Unknown => "urlPartUnknown",
        };
        let attr = match self.attr {
            AttrKind::None => "attrNone",
            AttrKind::Script => "attrScript",
            AttrKind::ScriptType => "attrScriptType",
            AttrKind::Style => "attrStyle",
            AttrKind::Url => "attrURL",
            AttrKind::Srcset => "attrSrcset",
        };
        let element = match self.element {
            Element::None => "elementNone",
            Element::Script => "elementScript",
            Element::Style => "elementStyle",
            Element::Textarea => "elementTextarea",
            Element::Title => "elementTitle",
        };
        let js = match self.js_ctx {
            JsCtx::Regexp => "jsCtxRegexp",
            JsCtx::DivOp => "jsCtxDivOp",
            JsCtx::Unknown => "jsCtxUnknown",
        };
        write!(f, "{{{state} {delim} {url} {js} {attr} {element} <nil>}}")
    }
}
