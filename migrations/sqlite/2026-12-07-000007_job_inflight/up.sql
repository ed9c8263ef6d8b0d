-- What a job's unfinished adapter calls may have left in the app: a JSON
-- array of account states whose outcome was never recorded (the process
-- died, or the call timed out). The next attempt converges from all of them.
ALTER TABLE sync_jobs ADD COLUMN inflight TEXT;
