//! Recursive-descent parser: tokens → [`Query`].
//!
//! Grammar (spec §5.1), clauses in this order:
//!
//! ```text
//! SELECT selectItem (, selectItem)* FROM Object [alias]
//! [WHERE cond] [WITH SECURITY_ENFORCED|USER_MODE|SYSTEM_MODE]
//! [GROUP BY field (, field)* [HAVING cond]] [ORDER BY orderItem (, orderItem)*]
//! [LIMIT n] [OFFSET n] [FOR VIEW|REFERENCE]
//! ```
//!
//! Salesforce behaviours mirrored here (all `MALFORMED_QUERY`):
//! - `AND` and `OR` mixed at one level without parentheses: `unexpected token: 'OR'`;
//! - `ALL ROWS` and `FOR UPDATE` (Apex only): `unexpected token: 'ALL'` / `'UPDATE'`;
//! - `convertCurrency()` in `WHERE`, `HAVING` or `ORDER BY`, aggregates in `WHERE`;
//! - `FIELDS(ALL)` / `FIELDS(CUSTOM)` without `LIMIT` ≤ 200;
//! - currency-coded literals (`USD5000`) compared with an aggregate, or mixed with plain
//!   numbers in one `IN` list.
//!
//! Not supported, rejected with `MALFORMED_QUERY`: `TYPEOF`, date functions
//! (`CALENDAR_YEAR(...)`), `GROUP BY ROLLUP/CUBE`, `USING SCOPE`, `WITH DATA CATEGORY`,
//! aliases on plain (non-aggregate) fields, Apex bind variables (`:name`).
//! Semantic checks that need the schema (unknown objects and fields, groupability,
//! semi-join field counts, OFFSET ≤ 2000) are left to the executor.

use crate::ast::{
    AggregateFunction, ComparisonOp, Condition, FieldPath, FieldsKind, ForClause, FromClause,
    InValues, Literal, NullsOrder, Operand, OrderDirection, OrderItem, Position, Query, SelectItem,
    WithClause,
};
use crate::date_literal::DateLiteral;
use crate::error::SoqlError;
use crate::escape::{decode_like, decode_string, parse_date, parse_datetime};
use crate::lexer::{Token, TokenKind, tokenize};

/// Deepest nesting of parentheses, `NOT`s and subqueries accepted, so hostile input cannot
/// overflow the stack.
const MAX_DEPTH: usize = 64;

/// The largest `LIMIT` allowed together with `FIELDS(ALL)` / `FIELDS(CUSTOM)`.
const FIELDS_LIMIT_MAX: u64 = 200;

/// Words that end an alias position: an object alias or an aggregate alias can't be one.
const RESERVED: &[&str] = &[
    "AND",
    "AS",
    "ASC",
    "BY",
    "CUBE",
    "DESC",
    "ELSE",
    "END",
    "EXCLUDES",
    "FIRST",
    "FOR",
    "FROM",
    "GROUP",
    "HAVING",
    "IN",
    "INCLUDES",
    "LAST",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "NULLS",
    "OFFSET",
    "OR",
    "ORDER",
    "ROLLUP",
    "SELECT",
    "THEN",
    "TYPEOF",
    "USING",
    "WHEN",
    "WHERE",
    "WITH",
    "TRUE",
    "FALSE",
    "ALL",
    "UPDATE",
    "VIEW",
    "REFERENCE",
];

/// Parses one SOQL statement into a [`Query`].
///
/// # Errors
/// `MALFORMED_QUERY` with Salesforce's caret diagram for syntax errors and unsupported
/// constructs (see the module docs).
///
/// ```
/// let query = ferry_soql::parse("SELECT Id, Name FROM Account WHERE Name LIKE 'Acme%' LIMIT 10")?;
/// assert_eq!(query.from.object, "Account");
/// assert_eq!(query.limit, Some(10));
/// # Ok::<(), ferry_soql::SoqlError>(())
/// ```
pub fn parse(soql: &str) -> Result<Query, SoqlError> {
    let tokens = tokenize(soql)?;
    let mut parser = Parser {
        source: soql,
        tokens,
        index: 0,
        depth: 0,
    };
    let query = parser.parse_query()?;
    let next = parser.peek();
    if next.kind != TokenKind::Eof {
        return Err(parser.unexpected(next));
    }
    Ok(query)
}

/// Where a condition appears; decides whether aggregates are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    Where,
    Having,
    OrderBy,
}

impl Clause {
    fn name(self) -> &'static str {
        match self {
            Clause::Where => "WHERE",
            Clause::Having => "HAVING",
            Clause::OrderBy => "ORDER BY",
        }
    }
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    index: usize,
    depth: usize,
}

/// Whether `word` is a reserved SOQL word that cannot be used as an object or aggregate
/// alias (`FROM`, `WHERE`, `LIMIT`, `NULL`, ...), ignoring case. Query builders can use it
/// to validate aliases.
pub fn is_reserved_word(word: &str) -> bool {
    RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(word))
}

impl Parser<'_> {
    // ----- token helpers -------------------------------------------------------------

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, offset: usize) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[(self.index + offset).min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.index += 1;
        }
        token
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        self.peek().is_keyword(keyword)
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            self.index += 1;
        }
        found
    }

    fn unexpected(&self, token: &Token) -> SoqlError {
        let text = (token.kind != TokenKind::Eof).then_some(token.text.as_str());
        SoqlError::unexpected_token(self.source, Some(token.position), text)
    }

    fn malformed(&self, position: Position, detail: impl Into<String>) -> SoqlError {
        SoqlError::malformed(self.source, Some(position), detail)
    }

    fn expect(&mut self, kind: TokenKind) -> Result<Token, SoqlError> {
        if self.peek().kind == kind {
            Ok(self.advance())
        } else {
            Err(self.unexpected(self.peek()))
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<Token, SoqlError> {
        if self.peek_keyword(keyword) {
            Ok(self.advance())
        } else {
            Err(self.unexpected(self.peek()))
        }
    }

    fn expect_ident(&mut self) -> Result<Token, SoqlError> {
        self.expect(TokenKind::Ident)
    }

    fn enter(&mut self) -> Result<(), SoqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let position = self.peek().position;
            return Err(self.malformed(position, "query is nested too deeply"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ----- query ---------------------------------------------------------------------

    fn parse_query(&mut self) -> Result<Query, SoqlError> {
        self.enter()?;
        let query = self.parse_query_inner();
        self.leave();
        query
    }

    fn parse_query_inner(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let mut select = Vec::new();
        let mut fields_needing_limit: Option<Position> = None;
        loop {
            let position = self.peek().position;
            let item = self.parse_select_item()?;
            if matches!(
                item,
                SelectItem::Fields(FieldsKind::All | FieldsKind::Custom)
            ) {
                fields_needing_limit.get_or_insert(position);
            }
            select.push(item);
            if self.peek().kind == TokenKind::Comma {
                self.advance();
            } else {
                break;
            }
        }

        self.expect_keyword("FROM")?;
        let object = self.expect_ident()?;
        let alias = if self.peek().kind == TokenKind::Ident && !is_reserved_word(&self.peek().text)
        {
            Some(self.advance().text)
        } else {
            None
        };
        let from = FromClause {
            object: object.text,
            alias,
            position: Some(object.position),
        };

        let where_ = if self.eat_keyword("WHERE") {
            Some(self.parse_condition(Clause::Where)?)
        } else {
            None
        };

        let with = if self.eat_keyword("WITH") {
            let token = self.expect_ident()?;
            let clause = [
                WithClause::SecurityEnforced,
                WithClause::UserMode,
                WithClause::SystemMode,
            ]
            .into_iter()
            .find(|clause| token.text.eq_ignore_ascii_case(clause.as_str()));
            match clause {
                Some(clause) => Some(clause),
                None => return Err(self.unexpected(&token)),
            }
        } else {
            None
        };

        let mut group_by = Vec::new();
        let mut having = None;
        if self.eat_keyword("GROUP") {
            self.expect_keyword("BY")?;
            loop {
                if self.peek().kind == TokenKind::Ident && self.peek_at(1).kind == TokenKind::LParen
                {
                    let name = self.peek().clone();
                    return Err(self.unsupported_function(&name));
                }
                group_by.push(self.parse_field_path()?);
                if self.peek().kind == TokenKind::Comma {
                    self.advance();
                } else {
                    break;
                }
            }
            if self.eat_keyword("HAVING") {
                having = Some(self.parse_condition(Clause::Having)?);
            }
        }

        let mut order_by = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                order_by.push(self.parse_order_item()?);
                if self.peek().kind == TokenKind::Comma {
                    self.advance();
                } else {
                    break;
                }
            }
        }

        let limit = if self.eat_keyword("LIMIT") {
            Some(self.parse_unsigned("LIMIT")?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET") {
            Some(self.parse_unsigned("OFFSET")?)
        } else {
            None
        };

        let for_clause = if self.eat_keyword("FOR") {
            let token = self.expect_ident()?;
            if token.text.eq_ignore_ascii_case("VIEW") {
                Some(ForClause::View)
            } else if token.text.eq_ignore_ascii_case("REFERENCE") {
                Some(ForClause::Reference)
            } else {
                // Includes FOR UPDATE, which is Apex-only.
                return Err(self.unexpected(&token));
            }
        } else {
            None
        };

        let limit_too_large = limit.is_none_or(|limit| limit > FIELDS_LIMIT_MAX);
        if let (Some(position), true) = (fields_needing_limit, limit_too_large) {
            return Err(self.malformed(
                position,
                "The SOQL FIELDS function must have a LIMIT of at most 200",
            ));
        }

        Ok(Query {
            select,
            from,
            where_,
            with,
            group_by,
            having,
            order_by,
            limit,
            offset,
            for_clause,
        })
    }

    fn parse_unsigned(&mut self, clause: &str) -> Result<u64, SoqlError> {
        let token = self.advance();
        let is_plain_digits =
            token.kind == TokenKind::Number && token.text.bytes().all(|b| b.is_ascii_digit());
        if !is_plain_digits {
            return Err(self.unexpected(&token));
        }
        token.text.parse().map_err(|_| {
            self.malformed(
                token.position,
                format!("{clause} value '{}' is out of range", token.text),
            )
        })
    }

    // ----- select list ---------------------------------------------------------------

    fn parse_select_item(&mut self) -> Result<SelectItem, SoqlError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::LParen => {
                self.advance();
                let subquery = self.parse_query()?;
                self.expect(TokenKind::RParen)?;
                Ok(SelectItem::Subquery(Box::new(subquery)))
            }
            TokenKind::Ident if token.is_keyword("TYPEOF") => {
                Err(self.malformed(token.position, "TYPEOF is not supported by this server"))
            }
            TokenKind::Ident if self.peek_at(1).kind == TokenKind::LParen => {
                self.parse_select_function()
            }
            TokenKind::Ident => Ok(SelectItem::Field(self.parse_field_path()?)),
            _ => Err(self.unexpected(&token)),
        }
    }

    fn parse_select_function(&mut self) -> Result<SelectItem, SoqlError> {
        let name = self.advance();
        self.expect(TokenKind::LParen)?;
        let upper = name.text.to_ascii_uppercase();
        let item = match upper.as_str() {
            "COUNT" if self.peek().kind == TokenKind::RParen => {
                self.advance();
                return Ok(SelectItem::CountAll);
            }
            "FIELDS" => {
                let kind_token = self.expect_ident()?;
                let kind = [FieldsKind::All, FieldsKind::Standard, FieldsKind::Custom]
                    .into_iter()
                    .find(|kind| kind_token.text.eq_ignore_ascii_case(kind.as_str()));
                let Some(kind) = kind else {
                    return Err(self.unexpected(&kind_token));
                };
                self.expect(TokenKind::RParen)?;
                return Ok(SelectItem::Fields(kind));
            }
            "CONVERTCURRENCY" | "TOLABEL" | "FORMAT" => {
                let field = self.parse_field_path()?;
                self.expect(TokenKind::RParen)?;
                let alias = self.parse_alias();
                match upper.as_str() {
                    "CONVERTCURRENCY" => SelectItem::ConvertCurrency { field, alias },
                    "TOLABEL" => SelectItem::ToLabel { field, alias },
                    _ => SelectItem::Format { field, alias },
                }
            }
            _ => {
                let Some(function) = AggregateFunction::from_name(&name.text) else {
                    return Err(self.unsupported_function(&name));
                };
                let field = self.parse_field_path()?;
                self.expect(TokenKind::RParen)?;
                let alias = self.parse_alias();
                SelectItem::Aggregate {
                    function,
                    field,
                    alias,
                }
            }
        };
        Ok(item)
    }

    fn parse_alias(&mut self) -> Option<String> {
        let token = self.peek();
        if token.kind == TokenKind::Ident && !is_reserved_word(&token.text) {
            Some(self.advance().text)
        } else {
            None
        }
    }

    fn unsupported_function(&self, name: &Token) -> SoqlError {
        self.malformed(
            name.position,
            format!("function '{}' is not supported by this server", name.text),
        )
    }

    fn parse_field_path(&mut self) -> Result<FieldPath, SoqlError> {
        let first = self.expect_ident()?;
        let position = first.position;
        let mut parts = vec![first.text];
        while self.peek().kind == TokenKind::Dot {
            self.advance();
            parts.push(self.expect_ident()?.text);
        }
        Ok(FieldPath {
            parts,
            position: Some(position),
        })
    }

    // ----- operands ------------------------------------------------------------------

    /// A field path, or (outside WHERE) an aggregate call.
    fn parse_operand(&mut self, clause: Clause) -> Result<Operand, SoqlError> {
        let token = self.peek().clone();
        if token.kind != TokenKind::Ident {
            return Err(self.unexpected(&token));
        }
        if self.peek_at(1).kind != TokenKind::LParen {
            return Ok(Operand::Field(self.parse_field_path()?));
        }
        if token.is_keyword("CONVERTCURRENCY") {
            return Err(self.malformed(
                token.position,
                format!("convertCurrency() is not allowed in {}", clause.name()),
            ));
        }
        let Some(function) = AggregateFunction::from_name(&token.text) else {
            return Err(self.unsupported_function(&token));
        };
        if clause == Clause::Where {
            return Err(self.malformed(
                token.position,
                "aggregate functions are not allowed in WHERE",
            ));
        }
        self.advance();
        self.expect(TokenKind::LParen)?;
        let field = self.parse_field_path()?;
        self.expect(TokenKind::RParen)?;
        Ok(Operand::Aggregate { function, field })
    }

    fn parse_order_item(&mut self) -> Result<OrderItem, SoqlError> {
        let field = self.parse_operand(Clause::OrderBy)?;
        let direction = if self.eat_keyword("DESC") {
            OrderDirection::Desc
        } else {
            self.eat_keyword("ASC");
            OrderDirection::Asc
        };
        let nulls = if self.eat_keyword("NULLS") {
            if self.eat_keyword("FIRST") {
                Some(NullsOrder::First)
            } else if self.eat_keyword("LAST") {
                Some(NullsOrder::Last)
            } else {
                return Err(self.unexpected(self.peek()));
            }
        } else {
            None
        };
        Ok(OrderItem {
            field,
            direction,
            nulls,
        })
    }

    // ----- conditions ----------------------------------------------------------------

    fn parse_condition(&mut self, clause: Clause) -> Result<Condition, SoqlError> {
        let first = self.parse_unary(clause)?;
        let joiner = if self.peek_keyword("AND") {
            "AND"
        } else if self.peek_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let other = if joiner == "AND" { "OR" } else { "AND" };
        let mut items = vec![first];
        while self.eat_keyword(joiner) {
            items.push(self.parse_unary(clause)?);
        }
        if self.peek_keyword(other) {
            return Err(self.unexpected(self.peek()));
        }
        Ok(if joiner == "AND" {
            Condition::And(items)
        } else {
            Condition::Or(items)
        })
    }

    fn parse_unary(&mut self, clause: Clause) -> Result<Condition, SoqlError> {
        self.enter()?;
        let result = self.parse_unary_inner(clause);
        self.leave();
        result
    }

    fn parse_unary_inner(&mut self, clause: Clause) -> Result<Condition, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.parse_unary(clause)?)));
        }
        if self.peek().kind == TokenKind::LParen {
            self.advance();
            let inner = self.parse_condition(clause)?;
            self.expect(TokenKind::RParen)?;
            return Ok(inner);
        }
        self.parse_simple_condition(clause)
    }

    fn parse_simple_condition(&mut self, clause: Clause) -> Result<Condition, SoqlError> {
        let field = self.parse_operand(clause)?;
        let token = self.advance();
        let op = match token.kind {
            TokenKind::Eq => Some(ComparisonOp::Eq),
            TokenKind::Ne => Some(ComparisonOp::Ne),
            TokenKind::Lt => Some(ComparisonOp::Lt),
            TokenKind::Le => Some(ComparisonOp::Le),
            TokenKind::Gt => Some(ComparisonOp::Gt),
            TokenKind::Ge => Some(ComparisonOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            let position = self.peek().position;
            let value = self.parse_literal()?;
            self.check_aggregate_currency(&field, &value, position)?;
            return Ok(Condition::Comparison { field, op, value });
        }
        if token.is_keyword("LIKE") {
            return self.parse_like(field);
        }
        if token.is_keyword("IN") {
            let values = self.parse_in_values(&field)?;
            return Ok(Condition::In {
                field,
                negated: false,
                values,
            });
        }
        if token.is_keyword("NOT") {
            let next = self.advance();
            if next.is_keyword("IN") {
                let values = self.parse_in_values(&field)?;
                return Ok(Condition::In {
                    field,
                    negated: true,
                    values,
                });
            }
            if next.is_keyword("LIKE") {
                return Ok(Condition::Not(Box::new(self.parse_like(field)?)));
            }
            return Err(self.unexpected(&next));
        }
        let includes = token.is_keyword("INCLUDES");
        if includes || token.is_keyword("EXCLUDES") {
            let Operand::Field(field) = field else {
                return Err(self.unexpected(&token));
            };
            let values = self.parse_string_list()?;
            return Ok(if includes {
                Condition::Includes { field, values }
            } else {
                Condition::Excludes { field, values }
            });
        }
        Err(self.unexpected(&token))
    }

    fn parse_like(&mut self, field: Operand) -> Result<Condition, SoqlError> {
        let token = self.advance();
        if token.kind != TokenKind::String {
            return Err(self.unexpected(&token));
        }
        let pattern = decode_like(token.string_content())
            .map_err(|error| self.invalid_escape(&token, &error.sequence))?;
        Ok(Condition::Comparison {
            field,
            op: ComparisonOp::Like,
            value: Literal::String(pattern),
        })
    }

    fn parse_in_values(&mut self, field: &Operand) -> Result<InValues, SoqlError> {
        self.expect(TokenKind::LParen)?;
        if self.peek_keyword("SELECT") {
            let subquery = self.parse_query()?;
            self.expect(TokenKind::RParen)?;
            return Ok(InValues::Subquery(Box::new(subquery)));
        }
        let mut values = Vec::new();
        let (mut coded, mut uncoded) = (false, false);
        loop {
            let position = self.peek().position;
            let value = self.parse_literal()?;
            self.check_aggregate_currency(field, &value, position)?;
            match value {
                Literal::Currency { .. } => coded = true,
                Literal::Integer(_) | Literal::Decimal(_) => uncoded = true,
                _ => {}
            }
            if coded && uncoded {
                return Err(self.malformed(
                    position,
                    "currency-coded and uncoded numbers cannot be mixed in IN",
                ));
            }
            values.push(value);
            if self.peek().kind == TokenKind::Comma {
                self.advance();
            } else {
                break;
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(InValues::List(values))
    }

    /// Salesforce rejects currency-coded literals compared with aggregates.
    fn check_aggregate_currency(
        &self,
        field: &Operand,
        value: &Literal,
        position: Position,
    ) -> Result<(), SoqlError> {
        if matches!(field, Operand::Aggregate { .. }) && matches!(value, Literal::Currency { .. }) {
            return Err(self.malformed(
                position,
                "currency-coded literals are not allowed with aggregate functions",
            ));
        }
        Ok(())
    }

    fn parse_string_list(&mut self) -> Result<Vec<String>, SoqlError> {
        self.expect(TokenKind::LParen)?;
        let mut values = Vec::new();
        loop {
            let token = self.advance();
            if token.kind != TokenKind::String {
                return Err(self.unexpected(&token));
            }
            values.push(self.decode(&token)?);
            if self.peek().kind == TokenKind::Comma {
                self.advance();
            } else {
                break;
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(values)
    }

    // ----- literals ------------------------------------------------------------------

    fn decode(&self, token: &Token) -> Result<String, SoqlError> {
        decode_string(token.string_content())
            .map_err(|error| self.invalid_escape(token, &error.sequence))
    }

    fn invalid_escape(&self, token: &Token, sequence: &str) -> SoqlError {
        self.malformed(
            token.position,
            format!(
                "Invalid string literal {}. Illegal character sequence '{sequence}' in string literal.",
                token.text
            ),
        )
    }

    fn parse_literal(&mut self) -> Result<Literal, SoqlError> {
        let token = self.advance();
        match token.kind {
            TokenKind::String => Ok(Literal::String(self.decode(&token)?)),
            TokenKind::Number => Ok(number_literal(&token.text)),
            TokenKind::Date => parse_date(&token.text).map(Literal::Date).ok_or_else(|| {
                self.malformed(
                    token.position,
                    format!("invalid date literal '{}'", token.text),
                )
            }),
            TokenKind::DateTime => parse_datetime(&token.text)
                .map(Literal::DateTime)
                .ok_or_else(|| {
                    self.malformed(
                        token.position,
                        format!("invalid datetime literal '{}'", token.text),
                    )
                }),
            TokenKind::Ident => self.parse_word_literal(&token),
            _ => Err(self.unexpected(&token)),
        }
    }

    fn parse_word_literal(&mut self, token: &Token) -> Result<Literal, SoqlError> {
        let word = token.text.as_str();
        if word.eq_ignore_ascii_case("NULL") {
            return Ok(Literal::Null);
        }
        if word.eq_ignore_ascii_case("TRUE") {
            return Ok(Literal::Boolean(true));
        }
        if word.eq_ignore_ascii_case("FALSE") {
            return Ok(Literal::Boolean(false));
        }
        if let Some(literal) = DateLiteral::constant(word) {
            return Ok(Literal::DateLiteral(literal));
        }
        if DateLiteral::is_parameterised_name(word) {
            self.expect(TokenKind::Colon)?;
            let number = self.advance();
            let n = (number.kind == TokenKind::Number
                && number.text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| number.text.parse::<u32>().ok())
            .flatten();
            let literal = n.and_then(|n| DateLiteral::parameterised(word, n));
            return literal
                .map(Literal::DateLiteral)
                .ok_or_else(|| self.unexpected(&number));
        }
        if let Some((iso_code, amount)) = split_currency(word) {
            return Ok(Literal::Currency {
                iso_code: iso_code.to_ascii_uppercase(),
                amount: amount.to_owned(),
            });
        }
        Err(self.unexpected(token))
    }
}

/// `42` → `Integer(42)`; `3.14` or an integer beyond `i64` → `Decimal` with the text.
fn number_literal(text: &str) -> Literal {
    match text.parse::<i64>() {
        Ok(value) if !text.contains('.') => Literal::Integer(value),
        _ => Literal::Decimal(text.to_owned()),
    }
}

/// Splits a currency-coded number `USD5000` / `eur12.50` into code and amount.
fn split_currency(word: &str) -> Option<(&str, &str)> {
    let (code, amount) = word.split_at_checked(3)?;
    let (whole, fraction) = match amount.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (amount, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = code.bytes().all(|b| b.is_ascii_alphabetic())
        && all_digits(whole)
        && fraction.is_none_or(all_digits);
    valid.then_some((code, amount))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    fn ok(soql: &str) -> Query {
        match parse(soql) {
            Ok(query) => query,
            Err(error) => panic!("{soql}\n{}", error.message),
        }
    }

    fn err(soql: &str) -> SoqlError {
        match parse(soql) {
            Ok(query) => panic!("expected an error for {soql}, got {query:?}"),
            Err(error) => error,
        }
    }

    /// Asserts a MALFORMED_QUERY with the given detail at the given column of row 1.
    fn assert_malformed(soql: &str, detail: &str, column: u32) {
        let error = err(soql);
        assert_eq!(error.error_code(), "MALFORMED_QUERY", "{soql}");
        assert_eq!(error.detail, detail, "{soql}");
        assert_eq!(error.row, Some(1), "{soql}");
        assert_eq!(error.column, Some(column), "{soql}");
    }

    fn path(dotted: &str) -> FieldPath {
        FieldPath::from_dotted(dotted)
    }

    fn field(dotted: &str) -> Operand {
        Operand::Field(path(dotted))
    }

    fn where_of(soql: &str) -> Condition {
        ok(soql).where_.expect("has a WHERE clause")
    }

    fn value_of(literal: &str) -> Literal {
        match where_of(&format!("SELECT Id FROM Account WHERE X = {literal}")) {
            Condition::Comparison { value, .. } => value,
            other => panic!("unexpected condition {other:?}"),
        }
    }

    fn cmp(name: &str, op: ComparisonOp, value: Literal) -> Condition {
        Condition::Comparison {
            field: field(name),
            op,
            value,
        }
    }

    #[test]
    fn parses_a_simple_query_keeping_name_casing() {
        let query = ok("SELECT Id, name, Account.Owner.Name FROM Contact");
        assert_eq!(
            query.select,
            vec![
                SelectItem::Field(path("Id")),
                SelectItem::Field(path("name")),
                SelectItem::Field(path("Account.Owner.Name")),
            ]
        );
        assert_eq!(query.from, FromClause::new("Contact"));
        assert_eq!(query.where_, None);
        assert_eq!(query.limit, None);
        assert_eq!(path("Account.Owner.Name").to_string(), "Account.Owner.Name");
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let query = ok(
            "select Id from Account where Name = 'x' with security_enforced order by Name desc \
             nulls last limit 5 offset 10 for view",
        );
        assert_eq!(query.with, Some(WithClause::SecurityEnforced));
        assert_eq!(
            query.order_by,
            vec![OrderItem {
                field: field("Name"),
                direction: OrderDirection::Desc,
                nulls: Some(NullsOrder::Last),
            }]
        );
        assert_eq!(query.limit, Some(5));
        assert_eq!(query.offset, Some(10));
        assert_eq!(query.for_clause, Some(ForClause::View));
        assert_eq!(
            ok("SELECT Id FROM Account WITH USER_MODE FOR REFERENCE").with,
            Some(WithClause::UserMode)
        );
        assert_eq!(
            ok("SELECT Id FROM Account FOR REFERENCE").for_clause,
            Some(ForClause::Reference)
        );
        assert_eq!(
            ok("SELECT Id FROM Account WITH SYSTEM_MODE").with,
            Some(WithClause::SystemMode)
        );
    }

    #[test]
    fn records_positions_for_schema_errors() {
        let query = ok("SELECT Id,\n  Nam FROM Acount WHERE Foo = 1");
        assert_eq!(query.from.position, Some(Position { row: 2, column: 12 }));
        let SelectItem::Field(name) = &query.select[1] else {
            panic!("field expected");
        };
        assert_eq!(name.position, Some(Position { row: 2, column: 3 }));
        let Some(Condition::Comparison { field, .. }) = &query.where_ else {
            panic!("comparison expected");
        };
        assert_eq!(
            field.field().position,
            Some(Position { row: 2, column: 25 })
        );
        let error = SoqlError::invalid_type(
            "SELECT Id,\n  Nam FROM Acount WHERE Foo = 1",
            query.from.position,
            &query.from.object,
        );
        assert!(error.message.starts_with("  Nam FROM Acount WHERE Foo = 1\n           ^\nERROR at Row:2:Column:12\nsObject type 'Acount'"));
    }

    #[test]
    fn object_alias_is_exposed_and_strippable() {
        let query = ok("SELECT a.Name, a.Owner.Name FROM Account a WHERE a.Name != null");
        assert_eq!(query.from.alias.as_deref(), Some("a"));
        let SelectItem::Field(name) = &query.select[1] else {
            panic!("field expected");
        };
        assert_eq!(name.strip_alias(Some("A")), ["Owner", "Name"]);
        assert_eq!(name.strip_alias(None), ["a", "Owner", "Name"]);
        assert_eq!(path("a").strip_alias(Some("a")), ["a"]);
        // A clause keyword right after the object is not an alias.
        assert_eq!(ok("SELECT Id FROM Account LIMIT 1").from.alias, None);
        assert_eq!(ok("SELECT Id FROM Order ORDER BY Id").from.object, "Order");
    }

    #[test]
    fn aggregates_group_by_and_having() {
        let query = ok(
            "SELECT LeadSource, COUNT(Id) cnt, count_distinct(OwnerId), SUM(Amount) total, \
             AVG(Amount), MIN(CloseDate), MAX(CloseDate) FROM Opportunity GROUP BY LeadSource, \
             StageName HAVING COUNT(Id) > 1 AND SUM(Amount) >= 100 ORDER BY COUNT(Id) DESC LIMIT 5",
        );
        assert_eq!(
            query.select[1],
            SelectItem::Aggregate {
                function: AggregateFunction::Count,
                field: path("Id"),
                alias: Some("cnt".to_owned()),
            }
        );
        assert_eq!(
            query.select[2],
            SelectItem::Aggregate {
                function: AggregateFunction::CountDistinct,
                field: path("OwnerId"),
                alias: None,
            }
        );
        let functions: Vec<_> = query.select[1..]
            .iter()
            .map(|item| match item {
                SelectItem::Aggregate { function, .. } => *function,
                other => panic!("aggregate expected, got {other:?}"),
            })
            .collect();
        assert_eq!(
            functions,
            [
                AggregateFunction::Count,
                AggregateFunction::CountDistinct,
                AggregateFunction::Sum,
                AggregateFunction::Avg,
                AggregateFunction::Min,
                AggregateFunction::Max,
            ]
        );
        assert_eq!(query.group_by, vec![path("LeadSource"), path("StageName")]);
        assert_eq!(
            query.having,
            Some(Condition::And(vec![
                Condition::Comparison {
                    field: Operand::Aggregate {
                        function: AggregateFunction::Count,
                        field: path("Id"),
                    },
                    op: ComparisonOp::Gt,
                    value: Literal::Integer(1),
                },
                Condition::Comparison {
                    field: Operand::Aggregate {
                        function: AggregateFunction::Sum,
                        field: path("Amount"),
                    },
                    op: ComparisonOp::Ge,
                    value: Literal::Integer(100),
                },
            ]))
        );
        assert_eq!(
            query.order_by[0].field,
            Operand::Aggregate {
                function: AggregateFunction::Count,
                field: path("Id"),
            }
        );
        assert_eq!(
            ok("SELECT COUNT() FROM Account").select,
            vec![SelectItem::CountAll]
        );
    }

    #[test]
    fn select_functions_and_subqueries() {
        let query = ok(
            "SELECT convertCurrency(Amount), CONVERTCURRENCY(Amount) amt, toLabel(StageName) stage, \
             FORMAT(CloseDate), (SELECT Id, Name FROM OpportunityLineItems WHERE Quantity > 1 \
             ORDER BY Name LIMIT 3) FROM Opportunity",
        );
        assert_eq!(
            query.select[0],
            SelectItem::ConvertCurrency {
                field: path("Amount"),
                alias: None,
            }
        );
        assert_eq!(
            query.select[1],
            SelectItem::ConvertCurrency {
                field: path("Amount"),
                alias: Some("amt".to_owned()),
            }
        );
        assert_eq!(
            query.select[2],
            SelectItem::ToLabel {
                field: path("StageName"),
                alias: Some("stage".to_owned()),
            }
        );
        assert_eq!(
            query.select[3],
            SelectItem::Format {
                field: path("CloseDate"),
                alias: None,
            }
        );
        let SelectItem::Subquery(subquery) = &query.select[4] else {
            panic!("subquery expected");
        };
        assert_eq!(subquery.from.object, "OpportunityLineItems");
        assert_eq!(subquery.limit, Some(3));
        assert_eq!(subquery.select.len(), 2);
    }

    #[test]
    fn fields_function_and_its_limit_rule() {
        assert_eq!(
            ok("SELECT FIELDS(ALL) FROM Account LIMIT 200").select,
            vec![SelectItem::Fields(FieldsKind::All)]
        );
        assert_eq!(
            ok("SELECT Id, fields(custom) FROM Account LIMIT 1").select[1],
            SelectItem::Fields(FieldsKind::Custom)
        );
        assert_eq!(
            ok("SELECT FIELDS(STANDARD) FROM Account").select,
            vec![SelectItem::Fields(FieldsKind::Standard)]
        );
        let detail = "The SOQL FIELDS function must have a LIMIT of at most 200";
        assert_malformed("SELECT FIELDS(ALL) FROM Account", detail, 8);
        assert_malformed(
            "SELECT Id, FIELDS(CUSTOM) FROM Account LIMIT 201",
            detail,
            12,
        );
        assert_malformed(
            "SELECT FIELDS(SOME) FROM Account",
            "unexpected token: 'SOME'",
            15,
        );
    }

    #[test]
    fn comparison_operators() {
        let ops = [
            ("=", ComparisonOp::Eq),
            ("!=", ComparisonOp::Ne),
            ("<>", ComparisonOp::Ne),
            ("<", ComparisonOp::Lt),
            ("<=", ComparisonOp::Le),
            (">", ComparisonOp::Gt),
            (">=", ComparisonOp::Ge),
        ];
        for (text, op) in ops {
            assert_eq!(
                where_of(&format!(
                    "SELECT Id FROM Account WHERE NumberOfEmployees {text} 5"
                )),
                cmp("NumberOfEmployees", op, Literal::Integer(5)),
                "{text}"
            );
        }
        // No whitespace needed around operators.
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Name='x'"),
            cmp("Name", ComparisonOp::Eq, Literal::String("x".to_owned()))
        );
    }

    #[test]
    fn like_keeps_wildcard_escapes() {
        assert_eq!(
            where_of(r"SELECT Id FROM Account WHERE Name LIKE 'a\%b\_c\\d\'e%_'"),
            cmp(
                "Name",
                ComparisonOp::Like,
                Literal::String(r"a\%b\_c\\d'e%_".to_owned())
            )
        );
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Name NOT LIKE 'a%'"),
            Condition::Not(Box::new(cmp(
                "Name",
                ComparisonOp::Like,
                Literal::String("a%".to_owned())
            )))
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Name LIKE 5",
            "unexpected token: '5'",
            40,
        );
    }

    #[test]
    fn in_lists_and_semi_joins() {
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Type IN ('a', 'b', null)"),
            Condition::In {
                field: field("Type"),
                negated: false,
                values: InValues::List(vec![
                    Literal::String("a".to_owned()),
                    Literal::String("b".to_owned()),
                    Literal::Null,
                ]),
            }
        );
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Rating not in (1)"),
            Condition::In {
                field: field("Rating"),
                negated: true,
                values: InValues::List(vec![Literal::Integer(1)]),
            }
        );
        let condition = where_of(
            "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE \
             LastName = 'x') AND Id NOT IN (SELECT AccountId FROM Opportunity)",
        );
        let Condition::And(items) = condition else {
            panic!("AND expected");
        };
        let Condition::In {
            values: InValues::Subquery(subquery),
            negated: false,
            ..
        } = &items[0]
        else {
            panic!("semi-join expected");
        };
        assert_eq!(subquery.from.object, "Contact");
        assert_eq!(subquery.select, vec![SelectItem::Field(path("AccountId"))]);
        assert!(matches!(
            &items[1],
            Condition::In {
                negated: true,
                values: InValues::Subquery(_),
                ..
            }
        ));
        assert_malformed(
            "SELECT Id FROM Account WHERE Id IN ()",
            "unexpected token: ')'",
            37,
        );
    }

    #[test]
    fn includes_and_excludes() {
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Tags__c INCLUDES ('a;b', 'c')"),
            Condition::Includes {
                field: path("Tags__c"),
                values: vec!["a;b".to_owned(), "c".to_owned()],
            }
        );
        assert_eq!(
            where_of("SELECT Id FROM Account WHERE Tags__c excludes ('x')"),
            Condition::Excludes {
                field: path("Tags__c"),
                values: vec!["x".to_owned()],
            }
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Tags__c INCLUDES (1)",
            "unexpected token: '1'",
            48,
        );
    }

    #[test]
    fn boolean_structure() {
        let a = || cmp("A", ComparisonOp::Eq, Literal::Integer(1));
        let b = || cmp("B", ComparisonOp::Eq, Literal::Integer(2));
        let c = || cmp("C", ComparisonOp::Eq, Literal::Integer(3));
        assert_eq!(
            where_of("SELECT Id FROM X WHERE A = 1 AND B = 2 AND C = 3"),
            Condition::And(vec![a(), b(), c()])
        );
        assert_eq!(
            where_of("SELECT Id FROM X WHERE A = 1 OR B = 2 OR C = 3"),
            Condition::Or(vec![a(), b(), c()])
        );
        assert_eq!(
            where_of("SELECT Id FROM X WHERE (A = 1 OR B = 2) AND C = 3"),
            Condition::And(vec![Condition::Or(vec![a(), b()]), c()])
        );
        assert_eq!(
            where_of("SELECT Id FROM X WHERE A = 1 OR (B = 2 AND C = 3)"),
            Condition::Or(vec![a(), Condition::And(vec![b(), c()])])
        );
        assert_eq!(
            where_of("SELECT Id FROM X WHERE NOT A = 1 AND NOT (B = 2 OR C = 3)"),
            Condition::And(vec![
                Condition::Not(Box::new(a())),
                Condition::Not(Box::new(Condition::Or(vec![b(), c()]))),
            ])
        );
        assert_eq!(where_of("SELECT Id FROM X WHERE ((A = 1))"), a());
    }

    #[test]
    fn mixing_and_with_or_is_malformed() {
        assert_malformed(
            "SELECT Id FROM X WHERE A = 1 AND B = 2 OR C = 3",
            "unexpected token: 'OR'",
            40,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE A = 1 OR B = 2 and C = 3",
            "unexpected token: 'and'",
            39,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE (A = 1 OR B = 2 AND C = 3)",
            "unexpected token: 'AND'",
            40,
        );
    }

    #[test]
    fn scalar_literals() {
        assert_eq!(value_of("null"), Literal::Null);
        assert_eq!(value_of("NULL"), Literal::Null);
        assert_eq!(value_of("TRUE"), Literal::Boolean(true));
        assert_eq!(value_of("false"), Literal::Boolean(false));
        assert_eq!(value_of("42"), Literal::Integer(42));
        assert_eq!(value_of("-42"), Literal::Integer(-42));
        assert_eq!(value_of("+7"), Literal::Integer(7));
        assert_eq!(value_of("3.50"), Literal::Decimal("3.50".to_owned()));
        assert_eq!(value_of("-0.5"), Literal::Decimal("-0.5".to_owned()));
        assert_eq!(
            value_of("99999999999999999999"),
            Literal::Decimal("99999999999999999999".to_owned())
        );
        assert_eq!(value_of("3.50").as_f64(), Some(3.5));
        assert_eq!(
            value_of("USD5000"),
            Literal::Currency {
                iso_code: "USD".to_owned(),
                amount: "5000".to_owned(),
            }
        );
        assert_eq!(
            value_of("eur12.50"),
            Literal::Currency {
                iso_code: "EUR".to_owned(),
                amount: "12.50".to_owned(),
            }
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            value_of(r#"'a\'b\"c\\d\ne\rf\tg\bh\fi'"#),
            Literal::String("a'b\"c\\d\ne\rf\tg\u{8}h\u{c}i".to_owned())
        );
        assert_eq!(value_of("''"), Literal::String(String::new()));
        assert_eq!(
            value_of("'héllo 世界'"),
            Literal::String("héllo 世界".to_owned())
        );
        assert_eq!(value_of(r"'50\%'"), Literal::String("50%".to_owned()));
        let error = err(r"SELECT Id FROM X WHERE Name = 'a\qb'");
        assert_eq!(error.error_code(), "MALFORMED_QUERY");
        assert_eq!(error.column, Some(31));
        assert_eq!(
            error.detail,
            r"Invalid string literal 'a\qb'. Illegal character sequence '\q' in string literal."
        );
    }

    #[test]
    fn date_and_datetime_literals() {
        assert_eq!(
            value_of("2024-02-29"),
            Literal::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("valid"))
        );
        let expected = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        for text in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01T00:00:00.000000Z",
            "2024-01-01T02:00:00+02:00",
            "2023-12-31T19:00:00-05:00",
        ] {
            assert_eq!(value_of(text), Literal::DateTime(expected), "{text}");
        }
        assert_malformed(
            "SELECT Id FROM X WHERE D = 2024-02-30",
            "invalid date literal '2024-02-30'",
            28,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE D > 2024-01-01T00:00:00",
            "invalid datetime literal '2024-01-01T00:00:00'",
            28,
        );
    }

    #[test]
    fn date_literals() {
        for literal in DateLiteral::constants() {
            assert_eq!(value_of(literal.name()), Literal::DateLiteral(literal));
            assert_eq!(
                value_of(&literal.name().to_ascii_lowercase()),
                Literal::DateLiteral(literal)
            );
        }
        for literal in DateLiteral::all_parameterised(30) {
            assert_eq!(
                value_of(&format!("{}:30", literal.name())),
                Literal::DateLiteral(literal)
            );
        }
        assert_eq!(
            value_of("last_n_days : 7"),
            Literal::DateLiteral(DateLiteral::LastNDays(7))
        );
        assert_malformed(
            "SELECT Id FROM X WHERE D = LAST_N_DAYS",
            "unexpected token: <EOF>",
            39,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE D = LAST_N_DAYS:-1",
            "unexpected token: '-1'",
            40,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE D = LAST_N_DAYS:1.5",
            "unexpected token: '1.5'",
            40,
        );
        assert_malformed(
            "SELECT Id FROM X WHERE D = TODAY:1",
            "unexpected token: ':'",
            33,
        );
    }

    #[test]
    fn salesforce_eof_message() {
        let error = err("SELECT Id FROM Account WHERE");
        assert_eq!(
            error.message,
            format!(
                "SELECT Id FROM Account WHERE\n{}^\nERROR at Row:1:Column:29\nunexpected token: <EOF>",
                " ".repeat(28)
            )
        );
    }

    #[test]
    fn syntax_errors() {
        assert_malformed("", "unexpected token: <EOF>", 1);
        assert_malformed("   ", "unexpected token: <EOF>", 4);
        assert_malformed("DELETE FROM Account", "unexpected token: 'DELETE'", 1);
        assert_malformed("SELECT FROM Account", "unexpected token: 'Account'", 13);
        assert_malformed("SELECT Id, FROM Account", "unexpected token: 'Account'", 17);
        assert_malformed("SELECT Id Account", "unexpected token: 'Account'", 11);
        assert_malformed("SELECT Id FROM", "unexpected token: <EOF>", 15);
        assert_malformed("SELECT Id FROM Account;", "unexpected token: ';'", 23);
        assert_malformed(
            "SELECT Id FROM Account WHERE Id = :acctId",
            "unexpected token: ':'",
            35,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE (Id = 'x'",
            "unexpected token: <EOF>",
            39,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Id = 'x')",
            "unexpected token: ')'",
            38,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Id 'x'",
            "unexpected token: ''x''",
            33,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Id = foo",
            "unexpected token: 'foo'",
            35,
        );
        assert_malformed(
            "SELECT Id FROM Account LIMIT -1",
            "unexpected token: '-1'",
            30,
        );
        assert_malformed(
            "SELECT Id FROM Account LIMIT 'x'",
            "unexpected token: ''x''",
            30,
        );
        assert_malformed(
            "SELECT Id FROM Account LIMIT 99999999999999999999",
            "LIMIT value '99999999999999999999' is out of range",
            30,
        );
        assert_malformed(
            "SELECT Id FROM Account LIMIT 5 ORDER BY Id",
            "unexpected token: 'ORDER'",
            32,
        );
        assert_malformed(
            "SELECT Id FROM Account ORDER Id",
            "unexpected token: 'Id'",
            30,
        );
        assert_malformed(
            "SELECT Id FROM Account ORDER BY Id NULLS",
            "unexpected token: <EOF>",
            41,
        );
        assert_malformed(
            "SELECT Id FROM Account HAVING COUNT(Id) > 1",
            "unexpected token: 'HAVING'",
            24,
        );
        assert_malformed(
            "SELECT Id FROM Account.Contacts",
            "unexpected token: '.'",
            23,
        );
        assert_malformed("SELECT Name n FROM Account", "unexpected token: 'n'", 13);
        assert_malformed(
            "SELECT COUNT() cnt FROM Account",
            "unexpected token: 'cnt'",
            16,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE Name = 'abc",
            "unterminated string literal",
            37,
        );
    }

    #[test]
    fn apex_only_and_unsupported_constructs() {
        assert_malformed(
            "SELECT Id FROM Account ALL ROWS",
            "unexpected token: 'ALL'",
            24,
        );
        assert_malformed(
            "SELECT Id FROM Account FOR UPDATE",
            "unexpected token: 'UPDATE'",
            28,
        );
        assert_malformed(
            "SELECT Id FROM Account WITH DATA CATEGORY Geography__c AT usa__c",
            "unexpected token: 'DATA'",
            29,
        );
        assert_malformed(
            "SELECT Id FROM Account USING SCOPE mine",
            "unexpected token: 'USING'",
            24,
        );
        assert_malformed(
            "SELECT TYPEOF What WHEN Account THEN Name END FROM Event",
            "TYPEOF is not supported by this server",
            8,
        );
        assert_malformed(
            "SELECT CALENDAR_YEAR(CreatedDate) FROM Account",
            "function 'CALENDAR_YEAR' is not supported by this server",
            8,
        );
        assert_malformed(
            "SELECT Id FROM Account GROUP BY ROLLUP(Type)",
            "function 'ROLLUP' is not supported by this server",
            33,
        );
        assert_malformed(
            "SELECT Id FROM Account WHERE DAY_ONLY(CreatedDate) = TODAY",
            "function 'DAY_ONLY' is not supported by this server",
            30,
        );
    }

    #[test]
    fn convert_currency_and_aggregates_are_rejected_in_filters() {
        assert_malformed(
            "SELECT Id FROM Opportunity WHERE convertCurrency(Amount) > 5",
            "convertCurrency() is not allowed in WHERE",
            34,
        );
        assert_malformed(
            "SELECT Id FROM Opportunity ORDER BY convertCurrency(Amount)",
            "convertCurrency() is not allowed in ORDER BY",
            37,
        );
        assert_malformed(
            "SELECT Id FROM Opportunity WHERE COUNT(Id) > 5",
            "aggregate functions are not allowed in WHERE",
            34,
        );
        assert_malformed(
            "SELECT StageName FROM Opportunity GROUP BY StageName HAVING COUNT(Id) INCLUDES ('a')",
            "unexpected token: 'INCLUDES'",
            71,
        );
    }

    #[test]
    fn queries_sent_by_real_clients() {
        // From the CumulusCI recordings in /work/shared/reference and the spec (§3, §8, §11).
        for soql in [
            "SELECT Id, Name, Description, Phone, AccountNumber FROM Account WHERE Name != 'Sample Account for Entitlements'",
            "select Email from Contact",
            "select Id,AccountNumber from Account",
            "select Name from Account where AccountNumber='420'",
            "SELECT QualifiedApiName, DataType FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName = 'Account'",
            "SELECT Id FROM ScratchOrgInfo limit 1",
            "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
            "SELECT Id,Name,SystemModstamp FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00.000000Z ORDER BY SystemModstamp ASC",
            "SELECT Id,Name FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00.000+00:00 AND SystemModstamp < 2024-02-01T00:00:00.000+00:00 ORDER BY SystemModstamp ASC LIMIT 100000",
            "SELECT CampaignId, AVG(Amount) FROM Opportunity GROUP BY CampaignId",
        ] {
            ok(soql);
        }
        // CumulusCI's Bulk 1.0 extract uses TYPEOF, which this server rejects.
        let error = err(
            "SELECT Id, TYPEOF Who WHEN Contact THEN LastName, Email WHEN Lead THEN LastName, \
             Company ELSE Id END, Subject FROM Event",
        );
        assert_eq!(error.error_code(), "MALFORMED_QUERY");
        assert_eq!(error.column, Some(12));
    }

    #[test]
    fn currency_literal_restrictions() {
        assert_malformed(
            "SELECT Id FROM Opportunity WHERE Amount IN (USD5, 6)",
            "currency-coded and uncoded numbers cannot be mixed in IN",
            51,
        );
        assert_malformed(
            "SELECT Id FROM Opportunity WHERE Amount NOT IN (5.5, 'x', EUR6)",
            "currency-coded and uncoded numbers cannot be mixed in IN",
            59,
        );
        assert!(parse("SELECT Id FROM Opportunity WHERE Amount IN (USD5, EUR6, null)").is_ok());
        assert_malformed(
            "SELECT StageName FROM Opportunity GROUP BY StageName HAVING SUM(Amount) > USD100",
            "currency-coded literals are not allowed with aggregate functions",
            75,
        );
        assert!(
            parse("SELECT StageName FROM Opportunity GROUP BY StageName HAVING SUM(Amount) > 100")
                .is_ok()
        );
    }

    #[test]
    fn errors_on_later_rows_report_row_and_column() {
        let error = err("SELECT Id\nFROM Account\nWHERE Name = 'x' OR Id = 'y' AND Type = 'z'");
        assert_eq!(error.row, Some(3));
        assert_eq!(error.column, Some(30));
        assert_eq!(
            error.message,
            "WHERE Name = 'x' OR Id = 'y' AND Type = 'z'\n                             ^\nERROR at Row:3:Column:30\nunexpected token: 'AND'"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "SELECT Id FROM X WHERE {}A = 1{}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert_eq!(err(&deep).detail, "query is nested too deeply");
        let nots = format!("SELECT Id FROM X WHERE {}A = 1", "NOT ".repeat(5000));
        assert_eq!(err(&nots).detail, "query is nested too deeply");
        let mut subqueries = "SELECT Id FROM X".to_owned();
        for _ in 0..200 {
            subqueries = format!("SELECT Id FROM X WHERE Id IN ({subqueries})");
        }
        assert_eq!(err(&subqueries).detail, "query is nested too deeply");
        // Reasonable nesting is fine.
        let ok_depth = format!(
            "SELECT Id FROM X WHERE {}A = 1{}",
            "(".repeat(20),
            ")".repeat(20)
        );
        assert!(parse(&ok_depth).is_ok());
    }
}
