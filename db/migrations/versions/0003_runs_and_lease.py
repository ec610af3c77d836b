"""nas_runs (run records; the running run is the study's lease), nas_trials.run_id, and the
INTERRUPTED and PRUNED trial states.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATES_0002 = ("RUNNING", "COMPLETE", "FAIL", "DUPLICATE", "INFEASIBLE")
STATES_0003 = STATES_0002 + ("INTERRUPTED", "PRUNED")
OUTCOMES = ("running", "completed", "interrupted", "failed", "error", "abandoned")
RUNNING = "outcome = 'running'"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _trials_0002() -> sa.Table:
    """nas_trials as of 0002, so SQLite's table copy needs no reflection of the old one."""
    return sa.Table(
        "nas_trials",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("arch_hash", sa.String(128), nullable=False),
        sa.Column("arch", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("accuracy_se", sa.Float(), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("macs", sa.BigInteger(), nullable=True),
        sa.Column("params_count", sa.BigInteger(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.CheckConstraint(f"state IN ({_sql_list(STATES_0002)})", name="ck_nas_trials_state"),
        sa.CheckConstraint("number >= 0", name="ck_nas_trials_number"),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name="fk_nas_trials_study_id_nas_studies"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_trials"),
        sa.UniqueConstraint("study_id", "key", name="uq_nas_trials_study_id_key"),
        sa.UniqueConstraint("study_id", "number", name="uq_nas_trials_study_id_number"),
        sa.Index("ix_nas_trials_study_id_state", "study_id", "state"),
        sa.Index("ix_nas_trials_study_id_arch_hash", "study_id", "arch_hash"),
    )


def upgrade() -> None:
    op.create_table(
        "nas_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("db_url", sa.String(2048), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("argv", sa.JSON(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_started", sa.Float(), nullable=True),
        sa.CheckConstraint(f"outcome IN ({_sql_list(OUTCOMES)})",
                           name=op.f("ck_nas_runs_outcome")),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name=op.f("fk_nas_runs_study_id_nas_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_runs")),
    )
    op.create_index(op.f("ix_nas_runs_study_id"), "nas_runs", ["study_id"])
    # at most one running run per study: the database itself guarantees the lease
    op.create_index(op.f("ix_nas_runs_study_id_running"), "nas_runs", ["study_id"], unique=True,
                    sqlite_where=sa.text(RUNNING), postgresql_where=sa.text(RUNNING))

    # SQLite cannot ALTER a CHECK constraint or add a foreign key: batch mode copies the table
    # (from the definition above); PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("nas_trials", copy_from=_trials_0002()) as batch:
        batch.drop_constraint(op.f("ck_nas_trials_state"), type_="check")
        batch.create_check_constraint(op.f("ck_nas_trials_state"),
                                      f"state IN ({_sql_list(STATES_0003)})")
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_nas_trials_run_id_nas_runs"), "nas_runs",
                                 ["run_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_nas_trials_run_id"), ["run_id"])


def downgrade() -> None:
    raise NotImplementedError("downgrades are not supported; restore a backup of the database")
