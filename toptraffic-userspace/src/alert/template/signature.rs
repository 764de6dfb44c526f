//! How builtins and methods receive their arguments: exec.go's parameter
//! kinds (evalArg, validateType) and each builtin's signature (funcs.go).

use super::node::Func;

/// How a function parameter receives its argument (exec.go, evalArg and
/// validateType): a `reflect.Value` (and/or/not/index/len/eq...), an
/// `interface{}` (print, html, json...) or a `string` (printf's format).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    Val,
    Iface,
    Str,
    Dur,
}

impl Param {
    pub(super) fn go_type(self) -> &'static str {
        match self {
            Param::Val => "reflect.Value",
            Param::Iface => "interface {}",
            Param::Str => "string",
            Param::Dur => "time.Duration",
        }
    }
}

/// (fixed parameters, variadic parameter) of each function (funcs.go).
pub(super) fn signature(f: Func) -> (&'static [Param], Option<Param>) {
    use Param::*;
    match f {
        Func::And | Func::Or | Func::Call | Func::Index | Func::Slice | Func::Eq => {
            (&[Val], Some(Val))
        }
        Func::Len | Func::Not => (&[Val], None),
        Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => (&[Val, Val], None),
        Func::Printf => (&[Str], Some(Iface)),
        Func::Json => (&[Iface], None),
        _ => (&[], Some(Iface)),
    }
}
