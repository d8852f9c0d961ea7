"""GET /jobs/{job_id}: where a scheduled task stands, as its row says.

Anyone with a job's id (a route returned it) may see where it stands; its tries and its
last error, whose text can name internal hosts and ports, are for the admin, through the
dead letter's routes (`failed_tasks.py`, behind the admin token)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import AfterValidator, BaseModel

from ..deps import SessionDep
from ..models import Job, JobStatusName, as_utc

router = APIRouter(tags=["jobs"])

UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]


class JobStatus(BaseModel):
    id: str
    task: str
    status: JobStatusName
    """pending: waiting for its first try or its next; running; then succeeded, failed, or
    cancelled (by an operator, from the dashboard, before it ran)."""
    created_at: UTCDateTime
    finished_at: UTCDateTime | None


class JobOut(JobStatus):
    """A job as the admin's routes show it."""

    tries: int
    """Tries that ran to an end; the task's `tries` bounds them."""
    interruptions: int
    """Runs cut short by a crash or a shutdown; they do not count as tries."""
    error: str | None
    """The last try's error, when one failed."""


@router.get("/jobs/{job_id}", responses={404: {"description": "No such job"}})
async def get_job(job_id: str, session: SessionDep) -> JobStatus:
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}.")
    return JobStatus.model_validate(job, from_attributes=True)
