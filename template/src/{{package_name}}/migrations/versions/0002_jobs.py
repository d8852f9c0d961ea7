"""Jobs: every scheduled task is a row, written with the request that scheduled it.

The failures kept in `task_failures` move to `jobs` as failed jobs (without their
arguments, which that table did not keep, so they cannot be re-run).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("interruptions", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_status_due_at", "jobs", ["status", "due_at"])
    op.create_index("ix_jobs_status_finished_at", "jobs", ["status", "finished_at", "id"])
    op.create_index(op.f("ix_jobs_request_id"), "jobs", ["request_id"])
    op.create_index(op.f("ix_jobs_task"), "jobs", ["task"])
    leases = op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.bulk_insert(
        leases, [{"name": "relay", "holder": "", "expires_at": datetime(1970, 1, 1, tzinfo=UTC)}]
    )
    op.execute(
        "INSERT INTO jobs (id, task, request_id, status, tries, interruptions, due_at, "
        "created_at, finished_at, error, traceback) "
        "SELECT job_id, task, request_id, 'failed', attempt, 0, failed_at, failed_at, "
        "failed_at, error, traceback FROM task_failures"
    )
    op.drop_index(op.f("ix_task_failures_task"), table_name="task_failures")
    op.drop_index(op.f("ix_task_failures_request_id"), table_name="task_failures")
    op.drop_table("task_failures")


def downgrade() -> None:
    op.create_table(
        "task_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_failures")),
    )
    op.create_index(op.f("ix_task_failures_request_id"), "task_failures", ["request_id"])
    op.create_index(op.f("ix_task_failures_task"), "task_failures", ["task"])
    op.execute(
        "INSERT INTO task_failures (task, job_id, request_id, attempt, arguments, error, "
        "traceback, failed_at) "
        "SELECT task, id, request_id, tries, '', coalesce(error, ''), coalesce(traceback, ''), "
        "coalesce(finished_at, created_at) FROM jobs WHERE status = 'failed'"
    )
    op.drop_table("leases")
    op.drop_index(op.f("ix_jobs_task"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_request_id"), table_name="jobs")
    op.drop_index("ix_jobs_status_finished_at", table_name="jobs")
    op.drop_index("ix_jobs_status_due_at", table_name="jobs")
    op.drop_table("jobs")
