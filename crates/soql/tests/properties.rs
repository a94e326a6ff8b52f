//! Property tests: print → parse round trips on generated trees, string quoting round
//! trips, and "the parser never panics".

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use ferry_soql::{
    AggregateFunction, ComparisonOp, Condition, DateLiteral, FieldPath, FieldsKind, ForClause,
    FromClause, InValues, Literal, NullsOrder, Operand, OrderDirection, OrderItem, Query,
    SelectItem, WithClause, escape_like, is_reserved_word, like_matches, parse, quote_string,
};
use proptest::prelude::*;
use proptest::strategy::Union;

/// Words that would change the parse if used as a name (keywords that may start or
/// continue a clause, and function names).
const AVOID: &[&str] = &["TYPEOF", "FIELDS", "COUNT", "SELECT", "NOT"];

fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_]{0,7}".prop_filter("not a keyword", |name| {
        !is_reserved_word(name) && !AVOID.iter().any(|word| word.eq_ignore_ascii_case(name))
    })
}

fn field_path() -> impl Strategy<Value = FieldPath> {
    prop::collection::vec(ident(), 1..4).prop_map(FieldPath::new)
}

fn aggregate_function() -> impl Strategy<Value = AggregateFunction> {
    prop_oneof![
        Just(AggregateFunction::Count),
        Just(AggregateFunction::CountDistinct),
        Just(AggregateFunction::Sum),
        Just(AggregateFunction::Avg),
        Just(AggregateFunction::Min),
        Just(AggregateFunction::Max),
    ]
}

fn date_literal() -> impl Strategy<Value = DateLiteral> {
    let constants: Vec<DateLiteral> = DateLiteral::constants().collect();
    let parameterised_count = DateLiteral::all_parameterised(0).count();
    prop_oneof![
        prop::sample::select(constants),
        (0..parameterised_count, 0u32..100_000).prop_map(|(index, n)| {
            DateLiteral::all_parameterised(n)
                .nth(index)
                .unwrap_or(DateLiteral::LastNDays(n))
        }),
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Boolean),
        any::<String>().prop_map(Literal::String),
        any::<i64>().prop_map(Literal::Integer),
        "-?[0-9]{1,6}\\.[0-9]{1,4}".prop_map(Literal::Decimal),
        "[0-9]{19,25}"
            .prop_filter("beyond i64", |text| text.parse::<i64>().is_err())
            .prop_map(Literal::Decimal),
        (0i64..73_000).prop_map(|days| {
            let epoch = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default();
            Literal::Date(epoch + TimeDelta::days(days))
        }),
        (0i64..6_000_000_000, 0u32..1_000_000).prop_map(|(seconds, micros)| {
            let value = DateTime::<Utc>::from_timestamp(seconds - 2_000_000_000, micros * 1000)
                .unwrap_or_default();
            Literal::DateTime(value)
        }),
        date_literal().prop_map(Literal::DateLiteral),
        ("[A-Z]{3}", "[0-9]{1,6}(\\.[0-9]{1,2})?")
            .prop_map(|(iso_code, amount)| Literal::Currency { iso_code, amount }),
    ]
}

/// A LIKE pattern in the canonical form the parser produces: escaped user text plus
/// wildcards.
fn like_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<String>().prop_map(|text| {
                ferry_soql::escape::decode_like(&escape_like(&text)).unwrap_or_default()
            }),
            Just("%".to_owned()),
            Just("_".to_owned()),
        ],
        0..4,
    )
    .prop_map(|pieces| pieces.concat())
}

fn is_currency(value: &Literal) -> bool {
    matches!(value, Literal::Currency { .. })
}

fn comparison_op() -> impl Strategy<Value = ComparisonOp> {
    prop_oneof![
        Just(ComparisonOp::Eq),
        Just(ComparisonOp::Ne),
        Just(ComparisonOp::Lt),
        Just(ComparisonOp::Le),
        Just(ComparisonOp::Gt),
        Just(ComparisonOp::Ge),
    ]
}

/// A flat query usable as a semi-join or child subquery.
fn simple_query() -> impl Strategy<Value = Query> {
    (
        field_path(),
        ident(),
        prop::option::of((field_path(), comparison_op(), literal())),
        prop::option::of(0u64..1000),
    )
        .prop_map(|(field, object, filter, limit)| Query {
            select: vec![SelectItem::Field(field)],
            from: FromClause::new(object),
            where_: filter.map(|(field, op, value)| Condition::Comparison {
                field: Operand::Field(field),
                op,
                value,
            }),
            with: None,
            group_by: Vec::new(),
            having: None,
            order_by: Vec::new(),
            limit,
            offset: None,
            for_clause: None,
        })
}

fn operand(aggregates: bool) -> BoxedStrategy<Operand> {
    let field = field_path().prop_map(Operand::Field);
    if aggregates {
        prop_oneof![
            field,
            (aggregate_function(), field_path())
                .prop_map(|(function, field)| Operand::Aggregate { function, field }),
        ]
        .boxed()
    } else {
        field.boxed()
    }
}

fn leaf_condition(aggregates: bool) -> BoxedStrategy<Condition> {
    let strings = prop::collection::vec(any::<String>(), 1..3);
    Union::new(vec![
        (operand(aggregates), comparison_op(), literal())
            .prop_filter("no currency with aggregates", |(field, _, value)| {
                !(is_currency(value) && matches!(field, Operand::Aggregate { .. }))
            })
            .prop_map(|(field, op, value)| Condition::Comparison { field, op, value })
            .boxed(),
        (operand(aggregates), like_pattern())
            .prop_map(|(field, pattern)| Condition::Comparison {
                field,
                op: ComparisonOp::Like,
                value: Literal::String(pattern),
            })
            .boxed(),
        (
            operand(aggregates),
            any::<bool>(),
            prop::collection::vec(literal(), 1..4),
        )
            .prop_filter("valid currency use", move |(field, _, values)| {
                let coded = values.iter().any(is_currency);
                let uncoded = values
                    .iter()
                    .any(|value| matches!(value, Literal::Integer(_) | Literal::Decimal(_)));
                !(coded && (uncoded || matches!(field, Operand::Aggregate { .. })))
            })
            .prop_map(|(field, negated, values)| Condition::In {
                field,
                negated,
                values: InValues::List(values),
            })
            .boxed(),
        (operand(aggregates), any::<bool>(), simple_query())
            .prop_map(|(field, negated, query)| Condition::In {
                field,
                negated,
                values: InValues::Subquery(Box::new(query)),
            })
            .boxed(),
        (field_path(), strings.clone())
            .prop_map(|(field, values)| Condition::Includes { field, values })
            .boxed(),
        (field_path(), strings)
            .prop_map(|(field, values)| Condition::Excludes { field, values })
            .boxed(),
    ])
    .boxed()
}

fn condition(aggregates: bool) -> impl Strategy<Value = Condition> {
    leaf_condition(aggregates).prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Condition::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Condition::Or),
            inner.prop_map(|condition| Condition::Not(Box::new(condition))),
        ]
    })
}

fn select_item() -> impl Strategy<Value = SelectItem> {
    let alias = || prop::option::of(ident());
    prop_oneof![
        4 => field_path().prop_map(SelectItem::Field),
        1 => Just(SelectItem::CountAll),
        1 => prop_oneof![
            Just(FieldsKind::All),
            Just(FieldsKind::Standard),
            Just(FieldsKind::Custom)
        ]
        .prop_map(SelectItem::Fields),
        2 => (aggregate_function(), field_path(), alias()).prop_map(|(function, field, alias)| {
            SelectItem::Aggregate { function, field, alias }
        }),
        1 => (field_path(), alias()).prop_map(|(field, alias)| SelectItem::ConvertCurrency { field, alias }),
        1 => (field_path(), alias()).prop_map(|(field, alias)| SelectItem::ToLabel { field, alias }),
        1 => (field_path(), alias()).prop_map(|(field, alias)| SelectItem::Format { field, alias }),
        1 => simple_query().prop_map(|query| SelectItem::Subquery(Box::new(query))),
    ]
}

fn order_item() -> impl Strategy<Value = OrderItem> {
    (
        operand(true),
        prop_oneof![Just(OrderDirection::Asc), Just(OrderDirection::Desc)],
        prop::option::of(prop_oneof![Just(NullsOrder::First), Just(NullsOrder::Last)]),
    )
        .prop_map(|(field, direction, nulls)| OrderItem {
            field,
            direction,
            nulls,
        })
}

fn query() -> impl Strategy<Value = Query> {
    let head = (
        prop::collection::vec(select_item(), 1..5),
        ident(),
        prop::option::of(ident()),
        prop::option::of(condition(false)),
        prop::option::of(prop_oneof![
            Just(WithClause::SecurityEnforced),
            Just(WithClause::UserMode),
            Just(WithClause::SystemMode),
        ]),
    );
    let tail = (
        prop::collection::vec(field_path(), 0..3),
        prop::option::of(condition(true)),
        prop::collection::vec(order_item(), 0..3),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![
            Just(ForClause::View),
            Just(ForClause::Reference)
        ]),
    );
    (head, tail).prop_map(
        |(
            (select, object, alias, where_, with),
            (group_by, having, order_by, limit, offset, for_clause),
        )| {
            let needs_small_limit = select.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Fields(FieldsKind::All | FieldsKind::Custom)
                )
            });
            let limit = if needs_small_limit {
                Some(limit.unwrap_or(200) % 201)
            } else {
                limit
            };
            let having = if group_by.is_empty() { None } else { having };
            Query {
                select,
                from: FromClause {
                    object,
                    alias,
                    position: None,
                },
                where_,
                with,
                group_by,
                having,
                order_by,
                limit,
                offset,
                for_clause,
            }
        },
    )
}

/// Fragments that reach deep parser states when joined at random.
const SOUP: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "INCLUDES",
    "EXCLUDES",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "FOR",
    "VIEW",
    "WITH",
    "USER_MODE",
    "ALL",
    "ROWS",
    "UPDATE",
    "COUNT",
    "SUM",
    "FIELDS",
    "TYPEOF",
    "convertCurrency",
    "toLabel",
    "FORMAT",
    "(",
    ")",
    ",",
    ".",
    ":",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "Id",
    "Name",
    "Account",
    "a",
    "'x'",
    "'\\'",
    "'\\q'",
    "'",
    "1",
    "-1",
    "1.5",
    "USD10",
    "USD1.5",
    "TODAY",
    "LAST_N_DAYS",
    "LAST_N_DAYS:3",
    "2024-01-01",
    "2024-01-01T00:00:00Z",
    "2024-13-45T99:00:00+25:00",
    "null",
    "TRUE",
    "é",
    ";",
    "\n",
    "\\",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (prop::sample::select(SOUP), prop_oneof![Just(" "), Just("")]),
        0..40,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(fragment, separator)| format!("{fragment}{separator}"))
            .collect()
    })
}

/// 256 cases by default (fast enough for every `cargo test`); set `PROPTEST_CASES` for a
/// longer run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn printed_ast_reparses_to_an_equal_ast(query in query()) {
        prop_assert_eq!(query.invalid_name(), None);
        let printed = query.to_string();
        let reparsed = parse(&printed).map_err(|error| {
            TestCaseError::fail(format!("{printed}\n{}", error.message))
        })?;
        prop_assert_eq!(&reparsed, &query, "{}", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn quoted_strings_parse_back_to_themselves(value in any::<String>()) {
        let soql = format!("SELECT Id FROM Account WHERE Name = {}", quote_string(&value));
        let query = parse(&soql).map_err(|error| TestCaseError::fail(error.message))?;
        let Some(Condition::Comparison { value: Literal::String(parsed), .. }) = query.where_ else {
            return Err(TestCaseError::fail(format!("unexpected tree for {soql}")));
        };
        prop_assert_eq!(parsed, value.clone());

        let soql = format!("SELECT Id FROM Account WHERE Tags__c INCLUDES ({}, 'b')", quote_string(&value));
        let query = parse(&soql).map_err(|error| TestCaseError::fail(error.message))?;
        let Some(Condition::Includes { values, .. }) = query.where_ else {
            return Err(TestCaseError::fail(format!("unexpected tree for {soql}")));
        };
        prop_assert_eq!(values, vec![value, "b".to_owned()]);
    }

    #[test]
    fn escaped_like_input_matches_only_literally(value in any::<String>(), suffix in any::<String>()) {
        let soql = format!("SELECT Id FROM Account WHERE Name LIKE '{}%'", escape_like(&value));
        let query = parse(&soql).map_err(|error| TestCaseError::fail(error.message))?;
        let Some(Condition::Comparison { value: Literal::String(pattern), op: ComparisonOp::Like, .. }) = query.where_ else {
            return Err(TestCaseError::fail(format!("unexpected tree for {soql}")));
        };
        let extended = format!("{value}{suffix}");
        prop_assert!(like_matches(&pattern, &extended));
        // Wildcard characters in the input match only themselves.
        if value.contains('%') || value.contains('_') {
            let altered = value.replace(['%', '_'], "\u{1}");
            prop_assert!(!like_matches(&pattern, &altered));
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn parse_never_panics_on_token_soup(text in soup()) {
        if let Ok(query) = parse(&text) {
            prop_assert_eq!(parse(&query.to_string()), Ok(query));
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_queries(query in query(), cut in any::<prop::sample::Index>(), insert in prop::sample::select(SOUP)) {
        let printed = query.to_string();
        let boundaries: Vec<usize> = printed.char_indices().map(|(index, _)| index).chain([printed.len()]).collect();
        let at = boundaries[cut.index(boundaries.len())];
        let mutated = format!("{}{insert}{}", &printed[..at], &printed[at..]);
        if let Ok(reparsed) = parse(&mutated) {
            prop_assert_eq!(parse(&reparsed.to_string()), Ok(reparsed));
        }
        let truncated = &printed[..at];
        let _ = parse(truncated);
    }
}
