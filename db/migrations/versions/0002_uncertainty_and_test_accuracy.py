"""nas_trials.accuracy_se (standard error) and nas_trials.test_accuracy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable columns: a plain ALTER TABLE ... ADD COLUMN on both backends, rows keep NULL
    op.add_column("nas_trials", sa.Column("accuracy_se", sa.Float(), nullable=True))
    op.add_column("nas_trials", sa.Column("test_accuracy", sa.Float(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("downgrades are not supported; restore a backup of the database")
