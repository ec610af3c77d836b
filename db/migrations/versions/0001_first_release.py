"""The first released schema: nas_studies and nas_trials (five trial states).

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES_0001 = ("RUNNING", "COMPLETE", "FAIL", "DUPLICATE", "INFEASIBLE")


def upgrade() -> None:
    op.create_table(
        "nas_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("space", sa.String(255), nullable=False),
        sa.Column("space_hash", sa.String(128), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_nas_studies_name")),
    )
    states = ", ".join(f"'{s}'" for s in STATES_0001)
    op.create_table(
        "nas_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("arch_hash", sa.String(128), nullable=False),
        sa.Column("arch", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("macs", sa.BigInteger(), nullable=True),
        sa.Column("params_count", sa.BigInteger(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.CheckConstraint(f"state IN ({states})", name=op.f("ck_nas_trials_state")),
        sa.CheckConstraint("number >= 0", name=op.f("ck_nas_trials_number")),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name=op.f("fk_nas_trials_study_id_nas_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_trials")),
        sa.UniqueConstraint("study_id", "key", name=op.f("uq_nas_trials_study_id_key")),
        sa.UniqueConstraint("study_id", "number", name=op.f("uq_nas_trials_study_id_number")),
    )
    op.create_index(op.f("ix_nas_trials_study_id_state"), "nas_trials", ["study_id", "state"])
    op.create_index(op.f("ix_nas_trials_study_id_arch_hash"), "nas_trials",
                    ["study_id", "arch_hash"])


def downgrade() -> None:
    raise NotImplementedError("downgrades are not supported; restore a backup of the database")
