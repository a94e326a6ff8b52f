//! `Display` for the AST: canonical SOQL that re-parses to an equal tree.
//!
//! Canonical form: keywords upper case, single spaces, `, ` between list items, explicit
//! `ASC`, `!=` for inequality, `NOT (...)` always parenthesised, nested `AND`/`OR` groups
//! parenthesised, `null`/`true`/`false` in lower case, strings quoted with
//! [`quote_string`], LIKE patterns with [`quote_like_pattern`], datetimes in UTC.
//!
//! Trees that the parser cannot produce (an `And`/`Or` with fewer than two children, a
//! `Decimal` whose text is not a number, names that are not identifiers, a LIKE whose
//! value is not a string) print as best they can and may not re-parse.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::{
    ComparisonOp, Condition, FieldPath, InValues, Literal, NullsOrder, Operand, OrderDirection,
    OrderItem, Query, SelectItem,
};
use crate::date_literal::DateLiteral;
use crate::escape::{format_date, format_datetime, quote_like_pattern, quote_string};

fn write_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn write_alias(f: &mut Formatter<'_>, alias: Option<&String>) -> fmt::Result {
    match alias {
        Some(alias) => write!(f, " {alias}"),
        None => Ok(()),
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        write_list(f, &self.select)?;
        write!(f, " FROM {}", self.from.object)?;
        write_alias(f, self.from.alias.as_ref())?;
        if let Some(condition) = &self.where_ {
            write!(f, " WHERE {condition}")?;
        }
        if let Some(with) = self.with {
            write!(f, " WITH {}", with.as_str())?;
        }
        if !self.group_by.is_empty() {
            f.write_str(" GROUP BY ")?;
            write_list(f, &self.group_by)?;
        }
        if let Some(condition) = &self.having {
            write!(f, " HAVING {condition}")?;
        }
        if !self.order_by.is_empty() {
            f.write_str(" ORDER BY ")?;
            write_list(f, &self.order_by)?;
        }
        if let Some(limit) = self.limit {
            write!(f, " LIMIT {limit}")?;
        }
        if let Some(offset) = self.offset {
            write!(f, " OFFSET {offset}")?;
        }
        if let Some(for_clause) = self.for_clause {
            write!(f, " FOR {}", for_clause.as_str())?;
        }
        Ok(())
    }
}

impl Display for FieldPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (index, part) in self.parts.iter().enumerate() {
            if index > 0 {
                f.write_char('.')?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SelectItem::Field(field) => write!(f, "{field}"),
            SelectItem::Fields(kind) => write!(f, "FIELDS({})", kind.as_str()),
            SelectItem::CountAll => f.write_str("COUNT()"),
            SelectItem::Aggregate {
                function,
                field,
                alias,
            } => {
                write!(f, "{}({field})", function.as_str())?;
                write_alias(f, alias.as_ref())
            }
            SelectItem::ConvertCurrency { field, alias } => {
                write!(f, "convertCurrency({field})")?;
                write_alias(f, alias.as_ref())
            }
            SelectItem::ToLabel { field, alias } => {
                write!(f, "toLabel({field})")?;
                write_alias(f, alias.as_ref())
            }
            SelectItem::Format { field, alias } => {
                write!(f, "FORMAT({field})")?;
                write_alias(f, alias.as_ref())
            }
            SelectItem::Subquery(query) => write!(f, "({query})"),
        }
    }
}

impl Display for Operand {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Field(field) => write!(f, "{field}"),
            Operand::Aggregate { function, field } => write!(f, "{}({field})", function.as_str()),
        }
    }
}

impl Display for OrderItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.field)?;
        f.write_str(match self.direction {
            OrderDirection::Asc => " ASC",
            OrderDirection::Desc => " DESC",
        })?;
        match self.nulls {
            Some(NullsOrder::First) => f.write_str(" NULLS FIRST"),
            Some(NullsOrder::Last) => f.write_str(" NULLS LAST"),
            None => Ok(()),
        }
    }
}

impl Display for Condition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Condition::And(items) => write_junction(f, items, " AND "),
            Condition::Or(items) => write_junction(f, items, " OR "),
            Condition::Not(inner) => write!(f, "NOT ({inner})"),
            Condition::Comparison {
                field,
                op: ComparisonOp::Like,
                value: Literal::String(pattern),
            } => write!(f, "{field} LIKE {}", quote_like_pattern(pattern)),
            Condition::Comparison { field, op, value } => {
                write!(f, "{field} {} {value}", op.as_str())
            }
            Condition::In {
                field,
                negated,
                values,
            } => {
                let keyword = if *negated { "NOT IN" } else { "IN" };
                write!(f, "{field} {keyword} (")?;
                match values {
                    InValues::List(values) => write_list(f, values)?,
                    InValues::Subquery(query) => write!(f, "{query}")?,
                }
                f.write_char(')')
            }
            Condition::Includes { field, values } => write_multi(f, field, "INCLUDES", values),
            Condition::Excludes { field, values } => write_multi(f, field, "EXCLUDES", values),
        }
    }
}

fn write_junction(f: &mut Formatter<'_>, items: &[Condition], joiner: &str) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(joiner)?;
        }
        if matches!(item, Condition::And(_) | Condition::Or(_)) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

fn write_multi(
    f: &mut Formatter<'_>,
    field: &FieldPath,
    keyword: &str,
    values: &[String],
) -> fmt::Result {
    write!(f, "{field} {keyword} (")?;
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        f.write_str(&quote_string(value))?;
    }
    f.write_char(')')
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Boolean(true) => f.write_str("true"),
            Literal::Boolean(false) => f.write_str("false"),
            Literal::String(value) => f.write_str(&quote_string(value)),
            Literal::Integer(value) => write!(f, "{value}"),
            Literal::Decimal(text) => f.write_str(text),
            Literal::Date(date) => f.write_str(&format_date(*date)),
            Literal::DateTime(datetime) => f.write_str(&format_datetime(*datetime)),
            Literal::DateLiteral(literal) => write!(f, "{literal}"),
            Literal::Currency { iso_code, amount } => write!(f, "{iso_code}{amount}"),
        }
    }
}

impl Display for DateLiteral {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self.parameter() {
            Some(n) => write!(f, ":{n}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::{FieldPath, Literal};
    use crate::date_literal::DateLiteral;
    use crate::parse;

    fn canonical(soql: &str) -> String {
        match parse(soql) {
            Ok(query) => query.to_string(),
            Err(error) => panic!("{soql}\n{}", error.message),
        }
    }

    #[test]
    fn prints_canonical_soql() {
        assert_eq!(
            canonical(
                "select id, account.name, count(id) c, convertcurrency(amount) amt, \
                 tolabel(stagename), format(closedate) fd, fields(standard), \
                 (select id from contacts where email like '%\\_x%' order by name limit 2) \
                 from opportunity o where (name = 'it''s' or name <> null) and not amount > usd5 \
                 and closedate = last_n_days:7 and createddate >= 2024-01-01T10:00:00+02:00 \
                 and d < 2024-01-31 and id in (select accountid from contact) and x not in (1, 2.5) \
                 and tags__c includes ('a;b', 'c') and tags__c excludes ('d') \
                 with security_enforced group by stagename having count(id) > 1 \
                 order by count(id) desc, name nulls first limit 10 offset 5 for view"
                    .replace("'it''s'", "'it\\'s'")
                    .as_str()
            ),
            "SELECT id, account.name, COUNT(id) c, convertCurrency(amount) amt, toLabel(stagename), \
             FORMAT(closedate) fd, FIELDS(STANDARD), (SELECT id FROM contacts WHERE email LIKE \
             '%\\_x%' ORDER BY name ASC LIMIT 2) FROM opportunity o WHERE (name = 'it\\'s' OR \
             name != null) AND NOT (amount > USD5) AND closedate = LAST_N_DAYS:7 AND \
             createddate >= 2024-01-01T08:00:00Z AND d < 2024-01-31 AND id IN (SELECT accountid \
             FROM contact) AND x NOT IN (1, 2.5) AND tags__c INCLUDES ('a;b', 'c') AND tags__c \
             EXCLUDES ('d') WITH SECURITY_ENFORCED GROUP BY stagename HAVING COUNT(id) > 1 \
             ORDER BY COUNT(id) DESC, name ASC NULLS FIRST LIMIT 10 OFFSET 5 FOR VIEW"
        );
        assert_eq!(
            canonical("SELECT COUNT() FROM Account"),
            "SELECT COUNT() FROM Account"
        );
        assert_eq!(
            canonical("SELECT Id FROM A WHERE ((x = true AND y = FALSE) AND z = NULL)"),
            "SELECT Id FROM A WHERE (x = true AND y = false) AND z = null"
        );
        assert_eq!(
            canonical("SELECT Id FROM A WHERE x NOT LIKE 'a\\\\b\\%'"),
            "SELECT Id FROM A WHERE NOT (x LIKE 'a\\\\b\\%')"
        );
    }

    #[test]
    fn builder_queries_print_escaped_literals_and_check_names() {
        use crate::ast::{ComparisonOp, Condition, FromClause, Operand, Query, SelectItem};
        let mut query = Query::new(
            vec![SelectItem::Field(FieldPath::from_dotted("Id"))],
            FromClause::new("Account"),
        );
        query.where_ = Some(Condition::Comparison {
            field: Operand::Field(FieldPath::from_dotted("Name")),
            op: ComparisonOp::Eq,
            value: Literal::String("x' OR Name != '".to_owned()),
        });
        assert_eq!(query.invalid_name(), None);
        let printed = query.to_string();
        assert_eq!(
            printed,
            "SELECT Id FROM Account WHERE Name = 'x\\' OR Name != \\''"
        );
        assert_eq!(parse(&printed).ok(), Some(query.clone()));

        query.where_ = Some(Condition::Comparison {
            field: Operand::Field(FieldPath::from_dotted("Name = 'a' OR Id")),
            op: ComparisonOp::Eq,
            value: Literal::Null,
        });
        assert_eq!(query.invalid_name(), Some("Name = 'a' OR Id"));
        query.where_ = None;
        query.from.alias = Some("WHERE".to_owned());
        assert_eq!(query.invalid_name(), Some("WHERE"));
        query.from.alias = None;
        query.select.push(SelectItem::Subquery(Box::new(Query::new(
            vec![SelectItem::Field(FieldPath::new(Vec::<String>::new()))],
            FromClause::new("Contacts"),
        ))));
        assert_eq!(query.invalid_name(), Some(""));
    }

    #[test]
    fn aggregate_query_predicates() {
        let query = parse("SELECT COUNT() FROM Account").ok();
        assert_eq!(
            query
                .as_ref()
                .map(|q| (q.is_count_only(), q.is_aggregate())),
            Some((true, false))
        );
        let query = parse("SELECT MAX(Amount) FROM Opportunity").ok();
        assert_eq!(
            query
                .as_ref()
                .map(|q| (q.is_count_only(), q.is_aggregate())),
            Some((false, true))
        );
        let query = parse("SELECT StageName FROM Opportunity GROUP BY StageName").ok();
        assert_eq!(query.map(|q| q.is_aggregate()), Some(true));
        let query = parse("SELECT Id FROM Opportunity").ok();
        assert_eq!(query.map(|q| q.is_aggregate()), Some(false));
    }

    #[test]
    fn literal_and_path_display() {
        assert_eq!(
            Literal::String("a'b\n".to_owned()).to_string(),
            "'a\\'b\\n'"
        );
        assert_eq!(Literal::Decimal("-0.50".to_owned()).to_string(), "-0.50");
        assert_eq!(Literal::Integer(-3).to_string(), "-3");
        assert_eq!(
            Literal::DateLiteral(DateLiteral::NFiscalYearsAgo(2)).to_string(),
            "N_FISCAL_YEARS_AGO:2"
        );
        assert_eq!(
            Literal::DateLiteral(DateLiteral::ThisFiscalQuarter).to_string(),
            "THIS_FISCAL_QUARTER"
        );
        assert_eq!(
            FieldPath::from_dotted("Account.Owner.Name").to_string(),
            "Account.Owner.Name"
        );
    }

    #[test]
    fn printing_is_idempotent_on_hand_written_queries() {
        for soql in [
            "SELECT Id FROM Account",
            "SELECT a.Id FROM Account a WHERE a.Name LIKE 'A%' ORDER BY a.Name DESC NULLS LAST",
            "SELECT Name, (SELECT LastName FROM Contacts) FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity WHERE StageName = 'Closed Won')",
            "SELECT CampaignId, AVG(Amount) FROM Opportunity GROUP BY CampaignId HAVING COUNT(Id) > 1 AND (MAX(Amount) > 10 OR MIN(Amount) < 1)",
            "SELECT FIELDS(ALL) FROM Lead LIMIT 200",
            "SELECT Id FROM Event WHERE ActivityDate = NEXT_N_WEEKS:2 OR ActivityDate = YESTERDAY",
            "SELECT Id FROM Opportunity WHERE Amount > EUR12.50 AND CloseDate = THIS_FISCAL_YEAR",
        ] {
            let once = canonical(soql);
            assert_eq!(canonical(&once), once, "{soql}");
            assert_eq!(parse(&once).ok(), parse(soql).ok(), "{soql}");
        }
    }
}
