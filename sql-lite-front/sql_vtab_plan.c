/*
 * Query planning for the "rangekv" virtual table (xBestIndex).
 *
 * Walk the key columns in order: each with a usable "=" or IN constraint
 * extends the equality prefix, the first one without may add a lower and
 * an upper bound, and planning stops there. The plan travels to xFilter
 * as idxStr, one letter per argv entry:
 *   e  equals        i  IN, all values at once (sqlite3_vtab_in)
 *   g  >   G  >=     l  <   L  <=     n  LIMIT   o  OFFSET
 * and idxNum is the length of the equality prefix. ORDER BY on the key
 * columns in key order (DESC columns reversed) is consumed. Constraints
 * with a collation other than BINARY are left to SQLite, because keys
 * compare as bytes.
 */
#include "sql-lite-front/sql_internal.h"

#include <string.h>
#include <strings.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* argv entries one plan uses: two per key column plus LIMIT and OFFSET. */
#define PLAN_ARGS_MAX (2 * RKV_SQL_COLUMNS_MAX + 2)

static bool constraint_is_binary(sqlite3_index_info *info, int index)
{
    const char *collation = sqlite3_vtab_collation(info, index);

    return collation == NULL || strcasecmp(collation, "BINARY") == 0;
}

/* Returns the first usable constraint on column with op, or -1. */
static int find_constraint(sqlite3_index_info *info, int column,
                           const unsigned char *ops, size_t n_ops)
{
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[i];

        if (!c->usable || c->iColumn != column ||
            !constraint_is_binary(info, i)) {
            continue;
        }
        for (size_t j = 0; j < n_ops; j++) {
            if (c->op == ops[j]) {
                return i;
            }
        }
    }
    return -1;
}

/* Gives constraint index the next argv slot, recording its letter. */
static void plan_use(sqlite3_index_info *info, int index, char letter,
                     char *plan, int *n_args)
{
    plan[*n_args] = letter;
    (*n_args)++;
    info->aConstraintUsage[index].argvIndex = *n_args;
}

static char bound_letter(unsigned char op)
{
    switch (op) {
    case SQLITE_INDEX_CONSTRAINT_GT:
        return 'g';
    case SQLITE_INDEX_CONSTRAINT_GE:
        return 'G';
    case SQLITE_INDEX_CONSTRAINT_LT:
        return 'l';
    default:
        return 'L';
    }
}

/* Adds the bounds on one key column; returns how many it used. */
static int plan_bounds(sqlite3_index_info *info, int column, char *plan,
                       int *n_args)
{
    static const unsigned char lower_ops[] = {SQLITE_INDEX_CONSTRAINT_GT,
                                              SQLITE_INDEX_CONSTRAINT_GE};
    static const unsigned char upper_ops[] = {SQLITE_INDEX_CONSTRAINT_LT,
                                              SQLITE_INDEX_CONSTRAINT_LE};
    int lower = find_constraint(info, column, lower_ops, 2);
    int upper = find_constraint(info, column, upper_ops, 2);

    if (lower >= 0) {
        plan_use(info, lower, bound_letter(info->aConstraint[lower].op), plan,
                 n_args);
    }
    if (upper >= 0) {
        plan_use(info, upper, bound_letter(info->aConstraint[upper].op), plan,
                 n_args);
    }
    return (lower >= 0) + (upper >= 0);
}

/* Tells whether scanning spans in key order yields the ORDER BY. */
static bool plan_orders(const struct rkv_sql_table *table,
                        sqlite3_index_info *info, int n_eq,
                        const bool *single_eq)
{
    size_t position = 0;

    for (int i = 0; i < info->nOrderBy; i++) {
        int column = info->aOrderBy[i].iColumn;
        bool desc = info->aOrderBy[i].desc != 0;

        /* Key columns pinned to one value may be left out of ORDER BY. */
        while (position < table->n_key_columns &&
               (int)table->key_columns[position] != column &&
               (int)position < n_eq && single_eq[position]) {
            position++;
        }
        if (position >= table->n_key_columns ||
            (int)table->key_columns[position] != column ||
            table->columns[column].descending != desc) {
            return false;
        }
        position++;
    }
    return true;
}

static void plan_limit(sqlite3_index_info *info, char *plan, int *n_args)
{
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[i];

        if (!c->usable) {
            continue;
        }
        if (c->op == SQLITE_INDEX_CONSTRAINT_LIMIT) {
            plan_use(info, i, 'n', plan, n_args);
        } else if (c->op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
            plan_use(info, i, 'o', plan, n_args);
        }
    }
}

int rkv_sql__vtab_best_index(sqlite3_vtab *base, sqlite3_index_info *info)
{
    static const unsigned char eq_ops[] = {SQLITE_INDEX_CONSTRAINT_EQ};
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base;
    const struct rkv_sql_table *table = vtab->table;
    bool single_eq[RKV_SQL_COLUMNS_MAX] = {false};
    char plan[PLAN_ARGS_MAX + 1];
    int n_args = 0;
    int n_eq = 0;
    int n_bounds = 0;
    double cost = 1e6;

    for (size_t p = 0; p < table->n_key_columns; p++) {
        int column = (int)table->key_columns[p];
        int eq = find_constraint(info, column, eq_ops, 1);

        if (eq < 0) {
            n_bounds = plan_bounds(info, column, plan, &n_args);
            break;
        }
        single_eq[p] = !sqlite3_vtab_in(info, eq, -1);
        plan_use(info, eq, single_eq[p] ? 'e' : 'i', plan, &n_args);
        if (!single_eq[p]) {
            sqlite3_vtab_in(info, eq, 1);
        }
        n_eq++;
        cost /= 100;
    }
    plan_limit(info, plan, &n_args);
    plan[n_args] = '\0';
    info->idxNum = n_eq;
    info->idxStr = sqlite3_mprintf("%s", plan);
    info->needToFreeIdxStr = 1;
    if (info->idxStr == NULL) {
        return SQLITE_NOMEM;
    }
    if ((size_t)n_eq == table->n_key_columns) {
        info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
        cost = 1;
    }
    cost /= (1 + 3 * n_bounds);
    info->estimatedCost = cost;
    info->estimatedRows = (sqlite3_int64)RKV_MAX(cost, 1.0);
    info->orderByConsumed = plan_orders(table, info, n_eq, single_eq);
    return SQLITE_OK;
}
