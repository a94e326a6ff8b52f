//! Formula fields: a parser and evaluator for the common subset of Salesforce formulas
//! (arithmetic, `&` concatenation, comparisons, `&&`/`||`, field and parent references such
//! as `Account.Name`, and functions IF, CASE, AND, OR, NOT, ISBLANK, ISNULL, BLANKVALUE,
//! NULLVALUE, ISPICKVAL, TEXT, VALUE, LEN, UPPER, LOWER, TRIM, LEFT, RIGHT, MID, CONTAINS,
//! BEGINS, FIND, SUBSTITUTE, ROUND, FLOOR, CEILING, ABS, MAX, MIN, MOD, SQRT, TODAY, NOW,
//! DATE, DATEVALUE, YEAR, MONTH, DAY, ADDMONTHS). Formulas are evaluated at read time, so a
//! formula result changes without the record's SystemModstamp moving.

use chrono::{Datelike, NaiveDate};

use crate::value::{
    Val, cmp_vals, date_to_days, days_to_date, ms_to_days, parse_date, parse_datetime, to_text,
};

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    /// Literal.
    Lit(Val),
    /// Field path (`Name`, `Account.Owner.Name`).
    Field(Vec<String>),
    /// Unary minus.
    Neg(Box<Formula>),
    /// Logical not (`!`).
    Not(Box<Formula>),
    /// Binary operator.
    Bin(Op, Box<Formula>, Box<Formula>),
    /// Function call (upper-cased name).
    Call(String, Vec<Formula>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// Formula syntax error.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("formula syntax error at {pos}: {msg}")]
pub struct FormulaError {
    /// Byte offset.
    pub pos: usize,
    /// What went wrong.
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, FormulaError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    const SYMS: [&str; 20] = [
        "==", "!=", "<>", "<=", ">=", "&&", "||", "(", ")", ",", "+", "-", "*", "/", "^", "&", "=",
        "<", ">", "!",
    ];
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n = src[start..i].parse::<f64>().map_err(|_| FormulaError {
                pos: start,
                msg: "bad number".into(),
            })?;
            out.push((start, Tok::Num(n)));
        } else if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = b.get(i) else {
                    return Err(FormulaError {
                        pos: start,
                        msg: "unterminated string".into(),
                    });
                };
                if ch == c {
                    i += 1;
                    break;
                }
                if ch == b'\\'
                    && let Some(&n) = b.get(i + 1)
                {
                    s.push(match n {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                    i += 2;
                    continue;
                }
                let ch_str = &src[i..];
                let Some(ch) = ch_str.chars().next() else {
                    break;
                };
                s.push(ch);
                i += ch.len_utf8();
            }
            out.push((start, Tok::Str(s)));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.' || b[i] == b'$')
            {
                i += 1;
            }
            out.push((start, Tok::Ident(src[start..i].to_string())));
        } else if let Some(sym) = SYMS.iter().find(|s| src[i..].starts_with(**s)) {
            out.push((i, Tok::Sym(sym)));
            i += sym.len();
        } else {
            return Err(FormulaError {
                pos: i,
                msg: format!("unexpected character '{}'", c as char),
            });
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.len, |(p, _)| *p)
    }
    fn eat(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn err<T>(&self, msg: &str) -> Result<T, FormulaError> {
        Err(FormulaError {
            pos: self.pos(),
            msg: msg.into(),
        })
    }
    fn expr(&mut self) -> Result<Formula, FormulaError> {
        let mut l = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            l = Formula::Bin(Op::Or, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Formula, FormulaError> {
        let mut l = self.cmp()?;
        while self.eat("&&") {
            let r = self.cmp()?;
            l = Formula::Bin(Op::And, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn cmp(&mut self) -> Result<Formula, FormulaError> {
        let l = self.add()?;
        let op = match self.peek() {
            Some(Tok::Sym("=" | "==")) => Op::Eq,
            Some(Tok::Sym("!=" | "<>")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => return Ok(l),
        };
        self.i += 1;
        let r = self.add()?;
        Ok(Formula::Bin(op, Box::new(l), Box::new(r)))
    }
    fn add(&mut self) -> Result<Formula, FormulaError> {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym("+")) => Op::Add,
                Some(Tok::Sym("-")) => Op::Sub,
                Some(Tok::Sym("&")) => Op::Concat,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.mul()?;
            l = Formula::Bin(op, Box::new(l), Box::new(r));
        }
    }
    fn mul(&mut self) -> Result<Formula, FormulaError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym("*")) => Op::Mul,
                Some(Tok::Sym("/")) => Op::Div,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.unary()?;
            l = Formula::Bin(op, Box::new(l), Box::new(r));
        }
    }
    fn unary(&mut self) -> Result<Formula, FormulaError> {
        if self.eat("-") {
            return Ok(Formula::Neg(Box::new(self.unary()?)));
        }
        if self.eat("!") {
            return Ok(Formula::Not(Box::new(self.unary()?)));
        }
        let base = self.primary()?;
        if self.eat("^") {
            let e = self.unary()?;
            return Ok(Formula::Bin(Op::Pow, Box::new(base), Box::new(e)));
        }
        Ok(base)
    }
    fn primary(&mut self) -> Result<Formula, FormulaError> {
        let Some(t) = self.peek().cloned() else {
            return self.err("unexpected end of formula");
        };
        self.i += 1;
        match t {
            Tok::Num(n) => Ok(Formula::Lit(Val::Num(n))),
            Tok::Str(s) => Ok(Formula::Lit(Val::Str(s.into()))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                if !self.eat(")") {
                    return self.err("expected )");
                }
                Ok(e)
            }
            Tok::Ident(id) => {
                let up = id.to_ascii_uppercase();
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.eat(")") {
                                break;
                            }
                            if !self.eat(",") {
                                return self.err("expected , or )");
                            }
                        }
                    }
                    return Ok(Formula::Call(up, args));
                }
                match up.as_str() {
                    "TRUE" => Ok(Formula::Lit(Val::Bool(true))),
                    "FALSE" => Ok(Formula::Lit(Val::Bool(false))),
                    "NULL" => Ok(Formula::Lit(Val::Null)),
                    _ => Ok(Formula::Field(id.split('.').map(str::to_string).collect())),
                }
            }
            Tok::Sym(s) => self.err(&format!("unexpected '{s}'")),
        }
    }
}

/// Resolves field references while evaluating.
pub trait Resolver {
    /// Value of a field path relative to the current record (Null when absent).
    fn field(&self, path: &[String]) -> Val;
    /// The clock, epoch ms.
    fn now_ms(&self) -> i64;
}

fn truthy(v: &Val) -> bool {
    matches!(v, Val::Bool(true))
}

fn num(v: &Val) -> Option<f64> {
    match v {
        Val::Str(s) => s.trim().parse().ok(),
        other => other.as_f64(),
    }
}

fn blank(v: &Val) -> bool {
    match v {
        Val::Null => true,
        Val::Str(s) => s.is_empty(),
        _ => false,
    }
}

fn text(v: &Val) -> String {
    to_text(v)
}

fn round(n: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (n * m).round() / m
}

impl Formula {
    /// Parses formula text.
    pub fn parse(src: &str) -> Result<Formula, FormulaError> {
        let toks = lex(src)?;
        let mut p = Parser {
            toks,
            i: 0,
            len: src.len(),
        };
        let e = p.expr()?;
        if p.i != p.toks.len() {
            return p.err("unexpected trailing input");
        }
        Ok(e)
    }

    /// Every field path referenced (for validation).
    pub fn fields(&self, out: &mut Vec<Vec<String>>) {
        match self {
            Formula::Lit(_) => {}
            Formula::Field(p) => out.push(p.clone()),
            Formula::Neg(e) | Formula::Not(e) => e.fields(out),
            Formula::Bin(_, a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Formula::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
        }
    }

    /// Evaluates against a record.
    pub fn eval(&self, r: &dyn Resolver) -> Val {
        match self {
            Formula::Lit(v) => v.clone(),
            Formula::Field(p) => r.field(p),
            Formula::Neg(e) => match e.eval(r) {
                Val::Int(i) => Val::Int(-i),
                v => num(&v).map_or(Val::Null, |n| Val::Num(-n)),
            },
            Formula::Not(e) => match e.eval(r) {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Null,
            },
            Formula::Bin(op, a, b) => {
                let (x, y) = (a.eval(r), b.eval(r));
                binop(*op, &x, &y)
            }
            Formula::Call(name, args) => call(name, args, r),
        }
    }
}

fn binop(op: Op, x: &Val, y: &Val) -> Val {
    use std::cmp::Ordering;
    match op {
        Op::Concat => Val::Str(format!("{}{}", text(x), text(y)).into()),
        Op::And => Val::Bool(truthy(x) && truthy(y)),
        Op::Or => Val::Bool(truthy(x) || truthy(y)),
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if x.is_null() || y.is_null() {
                let both = blank(x) && blank(y);
                return match op {
                    Op::Eq => Val::Bool(both),
                    Op::Ne => Val::Bool(!both),
                    _ => Val::Null,
                };
            }
            let o = match (num(x), num(y)) {
                (Some(a), Some(b)) if !matches!((x, y), (Val::Str(_), Val::Str(_))) => {
                    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
                }
                _ => cmp_vals(x, y),
            };
            Val::Bool(match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => {
            match (op, x, y) {
                (Op::Add, Val::Date(d), _) => {
                    return num(y).map_or(Val::Null, |n| Val::Date(d + n as i32));
                }
                (Op::Sub, Val::Date(d), Val::Date(e)) => return Val::Num(f64::from(d - e)),
                (Op::Sub, Val::Date(d), _) => {
                    return num(y).map_or(Val::Null, |n| Val::Date(d - n as i32));
                }
                (Op::Add, Val::DateTime(t), _) => {
                    return num(y)
                        .map_or(Val::Null, |n| Val::DateTime(t + (n * 86_400_000.0) as i64));
                }
                (Op::Sub, Val::DateTime(t), Val::DateTime(u)) => {
                    return Val::Num((t - u) as f64 / 86_400_000.0);
                }
                (Op::Sub, Val::DateTime(t), _) => {
                    return num(y)
                        .map_or(Val::Null, |n| Val::DateTime(t - (n * 86_400_000.0) as i64));
                }
                (Op::Add, Val::Str(a), Val::Str(b)) => return Val::Str(format!("{a}{b}").into()),
                _ => {}
            }
            let (Some(a), Some(b)) = (num(x), num(y)) else {
                return Val::Null;
            };
            let v = match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div => {
                    if b == 0.0 {
                        return Val::Null;
                    }
                    a / b
                }
                _ => a.powf(b),
            };
            Val::Num(v)
        }
    }
}

fn call(name: &str, args: &[Formula], r: &dyn Resolver) -> Val {
    let arg = |i: usize| args.get(i).map_or(Val::Null, |a| a.eval(r));
    let narg = |i: usize| num(&arg(i));
    match name {
        "IF" => {
            if truthy(&arg(0)) {
                arg(1)
            } else {
                arg(2)
            }
        }
        "CASE" => {
            let v = arg(0);
            let mut i = 1;
            while i + 1 < args.len() {
                if binop(Op::Eq, &v, &arg(i)) == Val::Bool(true) {
                    return arg(i + 1);
                }
                i += 2;
            }
            if args.len().is_multiple_of(2) {
                arg(args.len() - 1)
            } else {
                Val::Null
            }
        }
        "AND" => Val::Bool(args.iter().all(|a| truthy(&a.eval(r)))),
        "OR" => Val::Bool(args.iter().any(|a| truthy(&a.eval(r)))),
        "NOT" => Val::Bool(!truthy(&arg(0))),
        "ISBLANK" | "ISNULL" => Val::Bool(blank(&arg(0))),
        "BLANKVALUE" | "NULLVALUE" => {
            let v = arg(0);
            if blank(&v) { arg(1) } else { v }
        }
        "ISPICKVAL" => Val::Bool(text(&arg(0)) == text(&arg(1))),
        "TEXT" => {
            let v = arg(0);
            if v.is_null() {
                Val::Null
            } else {
                Val::Str(text(&v).into())
            }
        }
        "VALUE" => num(&arg(0)).map_or(Val::Null, Val::Num),
        "LEN" => Val::Num(text(&arg(0)).chars().count() as f64),
        "UPPER" => Val::Str(text(&arg(0)).to_uppercase().into()),
        "LOWER" => Val::Str(text(&arg(0)).to_lowercase().into()),
        "TRIM" => Val::Str(text(&arg(0)).trim().into()),
        "LEFT" => {
            let n = narg(1).unwrap_or(0.0).max(0.0) as usize;
            Val::Str(text(&arg(0)).chars().take(n).collect::<String>().into())
        }
        "RIGHT" => {
            let s: Vec<char> = text(&arg(0)).chars().collect();
            let n = (narg(1).unwrap_or(0.0).max(0.0) as usize).min(s.len());
            Val::Str(s[s.len() - n..].iter().collect::<String>().into())
        }
        "MID" => {
            let start = (narg(1).unwrap_or(1.0).max(1.0) as usize) - 1;
            let n = narg(2).unwrap_or(0.0).max(0.0) as usize;
            Val::Str(
                text(&arg(0))
                    .chars()
                    .skip(start)
                    .take(n)
                    .collect::<String>()
                    .into(),
            )
        }
        "CONTAINS" => Val::Bool(text(&arg(0)).contains(&text(&arg(1)))),
        "BEGINS" => Val::Bool(text(&arg(0)).starts_with(&text(&arg(1)))),
        "FIND" => Val::Num(
            text(&arg(1))
                .find(&text(&arg(0)))
                .map_or(0.0, |i| (i + 1) as f64),
        ),
        "SUBSTITUTE" => Val::Str(text(&arg(0)).replace(&text(&arg(1)), &text(&arg(2))).into()),
        "ROUND" => match (narg(0), narg(1)) {
            (Some(n), Some(d)) => Val::Num(round(n, d as i32)),
            _ => Val::Null,
        },
        "FLOOR" => narg(0).map_or(Val::Null, |n| Val::Num(n.floor())),
        "CEILING" => narg(0).map_or(Val::Null, |n| Val::Num(n.ceil())),
        "ABS" => narg(0).map_or(Val::Null, |n| Val::Num(n.abs())),
        "SQRT" => narg(0).map_or(Val::Null, |n| Val::Num(n.sqrt())),
        "MOD" => match (narg(0), narg(1)) {
            (Some(a), Some(b)) if b != 0.0 => Val::Num(a % b),
            _ => Val::Null,
        },
        "MAX" | "MIN" => {
            let vals: Vec<f64> = args.iter().filter_map(|a| num(&a.eval(r))).collect();
            if vals.len() != args.len() || vals.is_empty() {
                return Val::Null;
            }
            let f = if name == "MAX" {
                vals.iter().copied().fold(f64::MIN, f64::max)
            } else {
                vals.iter().copied().fold(f64::MAX, f64::min)
            };
            Val::Num(f)
        }
        "TODAY" => Val::Date(ms_to_days(r.now_ms())),
        "NOW" => Val::DateTime(r.now_ms()),
        "DATE" => match (narg(0), narg(1), narg(2)) {
            (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
                .map_or(Val::Null, |d| Val::Date(date_to_days(d))),
            _ => Val::Null,
        },
        "DATEVALUE" => match arg(0) {
            Val::DateTime(ms) => Val::Date(ms_to_days(ms)),
            Val::Date(d) => Val::Date(d),
            v => parse_date(&text(&v)).map_or(Val::Null, Val::Date),
        },
        "DATETIMEVALUE" => match arg(0) {
            Val::DateTime(ms) => Val::DateTime(ms),
            Val::Date(d) => Val::DateTime(i64::from(d) * 86_400_000),
            v => parse_datetime(&text(&v)).map_or(Val::Null, Val::DateTime),
        },
        "YEAR" | "MONTH" | "DAY" => {
            let d = match arg(0) {
                Val::Date(d) => days_to_date(d),
                Val::DateTime(ms) => days_to_date(ms_to_days(ms)),
                _ => return Val::Null,
            };
            Val::Num(f64::from(match name {
                "YEAR" => d.year() as u32,
                "MONTH" => d.month(),
                _ => d.day(),
            }))
        }
        "ADDMONTHS" => {
            let Val::Date(d) = arg(0) else {
                return Val::Null;
            };
            let Some(n) = narg(1) else { return Val::Null };
            let d = days_to_date(d);
            let months = chrono::Months::new(n.abs() as u32);
            let out = if n >= 0.0 {
                d.checked_add_months(months)
            } else {
                d.checked_sub_months(months)
            };
            out.map_or(Val::Null, |d| Val::Date(date_to_days(d)))
        }
        _ => Val::Null,
    }
}

/// Functions the evaluator knows (used to reject unknown functions at definition time).
pub const FUNCTIONS: &[&str] = &[
    "IF",
    "CASE",
    "AND",
    "OR",
    "NOT",
    "ISBLANK",
    "ISNULL",
    "BLANKVALUE",
    "NULLVALUE",
    "ISPICKVAL",
    "TEXT",
    "VALUE",
    "LEN",
    "UPPER",
    "LOWER",
    "TRIM",
    "LEFT",
    "RIGHT",
    "MID",
    "CONTAINS",
    "BEGINS",
    "FIND",
    "SUBSTITUTE",
    "ROUND",
    "FLOOR",
    "CEILING",
    "ABS",
    "SQRT",
    "MOD",
    "MAX",
    "MIN",
    "TODAY",
    "NOW",
    "DATE",
    "DATEVALUE",
    "DATETIMEVALUE",
    "YEAR",
    "MONTH",
    "DAY",
    "ADDMONTHS",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Rec(HashMap<String, Val>);
    impl Resolver for Rec {
        fn field(&self, path: &[String]) -> Val {
            self.0.get(&path.join(".")).cloned().unwrap_or(Val::Null)
        }
        fn now_ms(&self) -> i64 {
            1_700_000_000_000
        }
    }

    fn eval(src: &str) -> Val {
        let rec = Rec(HashMap::from([
            ("Amount".to_string(), Val::Num(100.0)),
            ("Name".to_string(), Val::str("Acme")),
            ("Account.Name".to_string(), Val::str("Parent")),
            ("CloseDate".to_string(), Val::Date(19_000)),
        ]));
        Formula::parse(src)
            .map(|f| f.eval(&rec))
            .unwrap_or(Val::str("PARSE ERROR"))
    }

    #[test]
    fn arithmetic_and_text() {
        assert_eq!(eval("Amount * 2 + 1"), Val::Num(201.0));
        assert_eq!(
            eval("Name & ' / ' & Account.Name"),
            Val::str("Acme / Parent")
        );
        assert_eq!(eval("IF(Amount > 50, 'big', 'small')"), Val::str("big"));
        assert_eq!(eval("TEXT(Amount)"), Val::str("100"));
        assert_eq!(eval("ROUND(10 / 3, 2)"), Val::Num(3.33));
        assert_eq!(eval("UPPER(LEFT(Name, 2))"), Val::str("AC"));
        assert_eq!(eval("ISBLANK(Missing)"), Val::Bool(true));
        assert_eq!(eval("BLANKVALUE(Missing, 'x')"), Val::str("x"));
        assert_eq!(eval("CloseDate + 1"), Val::Date(19_001));
        assert_eq!(eval("Amount > 10 && CONTAINS(Name, 'cm')"), Val::Bool(true));
        assert_eq!(eval("CASE(Name, 'Acme', 1, 2)"), Val::Num(1.0));
        assert!(matches!(eval("TODAY()"), Val::Date(_)));
    }

    #[test]
    fn syntax_errors() {
        assert!(Formula::parse("1 +").is_err());
        assert!(Formula::parse("IF(1, 2").is_err());
        assert!(Formula::parse("'open").is_err());
    }
}
