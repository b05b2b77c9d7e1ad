-- Aperture schema for Supabase, generated from the Alembic migrations in
-- common/records/migrations by `uv run python -m infra.supabase.schema`. Do not edit.
-- Row-level security, owner policies and Realtime publication are applied by guarded
-- DO blocks (see common/records/rls.py).

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

CREATE TABLE jobs (
    id UUID NOT NULL, 
    owner_id UUID, 
    function VARCHAR(128) NOT NULL, 
    name VARCHAR(256), 
    tags JSONB NOT NULL, 
    params JSONB NOT NULL, 
    status VARCHAR(16) NOT NULL, 
    progress FLOAT NOT NULL, 
    progress_message TEXT, 
    result JSONB, 
    error JSONB, 
    attempts INTEGER NOT NULL, 
    max_attempts INTEGER NOT NULL, 
    parent_id UUID, 
    executor VARCHAR(16) NOT NULL, 
    handle VARCHAR(256), 
    event_seq INTEGER NOT NULL, 
    heartbeat_at TIMESTAMP WITH TIME ZONE, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    started_at TIMESTAMP WITH TIME ZONE, 
    finished_at TIMESTAMP WITH TIME ZONE, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(parent_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_jobs_created_at ON jobs (created_at);

CREATE INDEX ix_jobs_function ON jobs (function);

CREATE INDEX ix_jobs_owner_id ON jobs (owner_id);

CREATE INDEX ix_jobs_parent_id ON jobs (parent_id);

CREATE INDEX ix_jobs_status ON jobs (status);

CREATE INDEX ix_jobs_status_heartbeat ON jobs (status, heartbeat_at);

CREATE TABLE files (
    id UUID NOT NULL, 
    owner_id UUID, 
    name VARCHAR(255) NOT NULL, 
    key VARCHAR(1024) NOT NULL, 
    size BIGINT NOT NULL, 
    sha256 VARCHAR(64), 
    kind VARCHAR(32), 
    content_type VARCHAR(255), 
    source_job_id UUID, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(source_job_id) REFERENCES jobs (id) ON DELETE SET NULL, 
    UNIQUE (key)
);

CREATE INDEX ix_files_created_at ON files (created_at);

CREATE INDEX ix_files_kind ON files (kind);

CREATE INDEX ix_files_owner_id ON files (owner_id);

CREATE TABLE job_events (
    id BIGSERIAL NOT NULL, 
    job_id UUID NOT NULL, 
    owner_id UUID, 
    seq INTEGER NOT NULL, 
    kind VARCHAR(16) NOT NULL, 
    status VARCHAR(16) NOT NULL, 
    progress FLOAT, 
    message TEXT, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE, 
    CONSTRAINT uq_job_events_job_seq UNIQUE (job_id, seq)
);

CREATE INDEX ix_job_events_job_id ON job_events (job_id);

CREATE INDEX ix_job_events_owner_id ON job_events (owner_id);

INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num;

-- Running upgrade 0001 -> 0002

CREATE INDEX IF NOT EXISTS "ix_jobs_owner_id" ON "jobs" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "jobs" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "jobs_owner_select" ON "jobs";
    CREATE POLICY "jobs_owner_select" ON "jobs" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "jobs_owner_insert" ON "jobs";
    CREATE POLICY "jobs_owner_insert" ON "jobs" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "jobs_owner_update" ON "jobs";
    CREATE POLICY "jobs_owner_update" ON "jobs" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "jobs_owner_delete" ON "jobs";
    CREATE POLICY "jobs_owner_delete" ON "jobs" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_job_events_owner_id" ON "job_events" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "job_events" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "job_events_owner_select" ON "job_events";
    CREATE POLICY "job_events_owner_select" ON "job_events" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "job_events_owner_insert" ON "job_events";
    CREATE POLICY "job_events_owner_insert" ON "job_events" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "job_events_owner_update" ON "job_events";
    CREATE POLICY "job_events_owner_update" ON "job_events" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "job_events_owner_delete" ON "job_events";
    CREATE POLICY "job_events_owner_delete" ON "job_events" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_files_owner_id" ON "files" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "files" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "files_owner_select" ON "files";
    CREATE POLICY "files_owner_select" ON "files" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "files_owner_insert" ON "files";
    CREATE POLICY "files_owner_insert" ON "files" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "files_owner_update" ON "files";
    CREATE POLICY "files_owner_update" ON "files" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "files_owner_delete" ON "files";
    CREATE POLICY "files_owner_delete" ON "files" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') AND NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND schemaname = current_schema() AND tablename = 'jobs') THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE "jobs";
  END IF;
END
$$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') AND NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND schemaname = current_schema() AND tablename = 'job_events') THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE "job_events";
  END IF;
END
$$;

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';

-- Running upgrade 0002 -> 0003

CREATE TABLE events (
    id BIGSERIAL NOT NULL, 
    owner_id UUID, 
    action VARCHAR(64) NOT NULL, 
    target_type VARCHAR(32), 
    target_id VARCHAR(64), 
    subject VARCHAR(320), 
    client_ip VARCHAR(64), 
    request_id VARCHAR(128), 
    details JSONB NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_events_action_created ON events (action, created_at);

CREATE INDEX ix_events_ip_created ON events (client_ip, created_at);

CREATE INDEX ix_events_owner_id ON events (owner_id);

CREATE INDEX ix_events_subject_created ON events (subject, created_at);

CREATE TABLE users (
    id UUID NOT NULL, 
    email VARCHAR(320), 
    password_hash VARCHAR(255), 
    role VARCHAR(16) NOT NULL, 
    is_active BOOLEAN NOT NULL, 
    display_name VARCHAR(128), 
    provider VARCHAR(16) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    last_login_at TIMESTAMP WITH TIME ZONE, 
    PRIMARY KEY (id), 
    UNIQUE (email)
);

CREATE TABLE api_keys (
    id UUID NOT NULL, 
    owner_id UUID NOT NULL, 
    name VARCHAR(128) NOT NULL, 
    prefix VARCHAR(16) NOT NULL, 
    key_hash VARCHAR(64) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    last_used_at TIMESTAMP WITH TIME ZONE, 
    expires_at TIMESTAMP WITH TIME ZONE, 
    revoked_at TIMESTAMP WITH TIME ZONE, 
    PRIMARY KEY (id), 
    FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE, 
    UNIQUE (key_hash)
);

CREATE INDEX ix_api_keys_owner_id ON api_keys (owner_id);

CREATE TABLE auth_sessions (
    id UUID NOT NULL, 
    owner_id UUID NOT NULL, 
    user_agent VARCHAR(512), 
    client_ip VARCHAR(64), 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    last_used_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    revoked_at TIMESTAMP WITH TIME ZONE, 
    revoked_reason VARCHAR(64), 
    PRIMARY KEY (id), 
    FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX ix_auth_sessions_owner_id ON auth_sessions (owner_id);

CREATE TABLE refresh_tokens (
    token_hash VARCHAR(64) NOT NULL, 
    session_id UUID NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    used_at TIMESTAMP WITH TIME ZONE, 
    PRIMARY KEY (token_hash), 
    FOREIGN KEY(session_id) REFERENCES auth_sessions (id) ON DELETE CASCADE
);

CREATE INDEX ix_refresh_tokens_session_id ON refresh_tokens (session_id);

CREATE INDEX IF NOT EXISTS "ix_auth_sessions_owner_id" ON "auth_sessions" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "auth_sessions" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "auth_sessions_owner_select" ON "auth_sessions";
    CREATE POLICY "auth_sessions_owner_select" ON "auth_sessions" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "auth_sessions_owner_insert" ON "auth_sessions";
    CREATE POLICY "auth_sessions_owner_insert" ON "auth_sessions" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "auth_sessions_owner_update" ON "auth_sessions";
    CREATE POLICY "auth_sessions_owner_update" ON "auth_sessions" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "auth_sessions_owner_delete" ON "auth_sessions";
    CREATE POLICY "auth_sessions_owner_delete" ON "auth_sessions" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_api_keys_owner_id" ON "api_keys" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "api_keys" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "api_keys_owner_select" ON "api_keys";
    CREATE POLICY "api_keys_owner_select" ON "api_keys" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "api_keys_owner_insert" ON "api_keys";
    CREATE POLICY "api_keys_owner_insert" ON "api_keys" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "api_keys_owner_update" ON "api_keys";
    CREATE POLICY "api_keys_owner_update" ON "api_keys" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "api_keys_owner_delete" ON "api_keys";
    CREATE POLICY "api_keys_owner_delete" ON "api_keys" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_events_owner_id" ON "events" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "events" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "events_owner_select" ON "events";
    CREATE POLICY "events_owner_select" ON "events" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "events_owner_insert" ON "events";
    CREATE POLICY "events_owner_insert" ON "events" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "events_owner_update" ON "events";
    CREATE POLICY "events_owner_update" ON "events" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "events_owner_delete" ON "events";
    CREATE POLICY "events_owner_delete" ON "events" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "users" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "users_owner_select" ON "users";
    CREATE POLICY "users_owner_select" ON "users" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = id);
    DROP POLICY IF EXISTS "users_owner_insert" ON "users";
    CREATE POLICY "users_owner_insert" ON "users" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = id);
    DROP POLICY IF EXISTS "users_owner_update" ON "users";
    CREATE POLICY "users_owner_update" ON "users" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = id) WITH CHECK ((SELECT auth.uid()) = id);
    DROP POLICY IF EXISTS "users_owner_delete" ON "users";
    CREATE POLICY "users_owner_delete" ON "users" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = id);
  END IF;
END
$$;

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

-- Running upgrade 0003 -> 0004

CREATE TABLE datasets (
    id UUID NOT NULL, 
    owner_id UUID, 
    name VARCHAR(255) NOT NULL, 
    description TEXT, 
    tags JSONB NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_datasets_created_at ON datasets (created_at);

CREATE INDEX ix_datasets_owner_id ON datasets (owner_id);

CREATE TABLE uploads (
    id UUID NOT NULL, 
    owner_id UUID, 
    name VARCHAR(255) NOT NULL, 
    size BIGINT NOT NULL, 
    content_type VARCHAR(255), 
    sha256 VARCHAR(64), 
    dataset_id UUID, 
    file_id UUID NOT NULL, 
    key VARCHAR(1024) NOT NULL, 
    store_upload_id VARCHAR(1024) NOT NULL, 
    part_size BIGINT NOT NULL, 
    part_count INTEGER NOT NULL, 
    status VARCHAR(16) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE SET NULL
);

CREATE INDEX ix_uploads_created_at ON uploads (created_at);

CREATE INDEX ix_uploads_owner_id ON uploads (owner_id);

CREATE INDEX ix_uploads_status ON uploads (status);

ALTER TABLE files ADD COLUMN dataset_id UUID;

ALTER TABLE files ADD COLUMN details JSONB;

ALTER TABLE files ADD COLUMN deleted_at TIMESTAMP WITH TIME ZONE;

CREATE INDEX ix_files_dataset_id ON files (dataset_id);

CREATE INDEX ix_files_deleted_at ON files (deleted_at);

ALTER TABLE files ADD CONSTRAINT fk_files_dataset_id_datasets FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE SET NULL;

CREATE INDEX IF NOT EXISTS "ix_datasets_owner_id" ON "datasets" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "datasets" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "datasets_owner_select" ON "datasets";
    CREATE POLICY "datasets_owner_select" ON "datasets" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "datasets_owner_insert" ON "datasets";
    CREATE POLICY "datasets_owner_insert" ON "datasets" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "datasets_owner_update" ON "datasets";
    CREATE POLICY "datasets_owner_update" ON "datasets" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "datasets_owner_delete" ON "datasets";
    CREATE POLICY "datasets_owner_delete" ON "datasets" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_uploads_owner_id" ON "uploads" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "uploads" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "uploads_owner_select" ON "uploads";
    CREATE POLICY "uploads_owner_select" ON "uploads" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "uploads_owner_insert" ON "uploads";
    CREATE POLICY "uploads_owner_insert" ON "uploads" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "uploads_owner_update" ON "uploads";
    CREATE POLICY "uploads_owner_update" ON "uploads" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "uploads_owner_delete" ON "uploads";
    CREATE POLICY "uploads_owner_delete" ON "uploads" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0003';

-- Running upgrade 0004 -> 0005

CREATE TABLE slides (
    id UUID NOT NULL, 
    owner_id UUID, 
    file_id UUID NOT NULL, 
    dataset_id UUID, 
    name VARCHAR(255) NOT NULL, 
    vendor VARCHAR(64), 
    width BIGINT NOT NULL, 
    height BIGINT NOT NULL, 
    level_count INTEGER NOT NULL, 
    levels JSONB NOT NULL, 
    tile_width INTEGER, 
    tile_height INTEGER, 
    mpp_x FLOAT, 
    mpp_y FLOAT, 
    objective_power FLOAT, 
    bounds JSONB, 
    background_color VARCHAR(16), 
    quickhash VARCHAR(128), 
    properties JSONB NOT NULL, 
    associated JSONB NOT NULL, 
    prediction_count INTEGER DEFAULT '0' NOT NULL, 
    source_job_id UUID, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE SET NULL, 
    FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE, 
    FOREIGN KEY(source_job_id) REFERENCES jobs (id) ON DELETE SET NULL, 
    CONSTRAINT uq_slides_file_id UNIQUE (file_id)
);

CREATE INDEX ix_slides_created_at ON slides (created_at);

CREATE INDEX ix_slides_dataset_id ON slides (dataset_id);

CREATE INDEX ix_slides_owner_id ON slides (owner_id);

CREATE INDEX ix_slides_vendor ON slides (vendor);

CREATE INDEX IF NOT EXISTS "ix_slides_owner_id" ON "slides" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "slides" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "slides_owner_select" ON "slides";
    CREATE POLICY "slides_owner_select" ON "slides" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "slides_owner_insert" ON "slides";
    CREATE POLICY "slides_owner_insert" ON "slides" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "slides_owner_update" ON "slides";
    CREATE POLICY "slides_owner_update" ON "slides" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "slides_owner_delete" ON "slides";
    CREATE POLICY "slides_owner_delete" ON "slides" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0004';

-- Running upgrade 0005 -> 0006

CREATE TABLE inference_services (
    id UUID NOT NULL, 
    owner_id UUID, 
    name VARCHAR(200) NOT NULL, 
    description TEXT, 
    base_url VARCHAR(2048) NOT NULL, 
    secret_sealed TEXT NOT NULL, 
    mpp FLOAT, 
    output JSONB NOT NULL, 
    params_schema JSONB, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    UNIQUE (name)
);

CREATE TABLE inference_callbacks (
    id BIGSERIAL NOT NULL, 
    task_id UUID NOT NULL, 
    owner_id UUID, 
    event_id VARCHAR(128) NOT NULL, 
    status VARCHAR(16) NOT NULL, 
    progress FLOAT, 
    message TEXT, 
    predictions_key VARCHAR(1024), 
    predictions_url TEXT, 
    received_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(task_id) REFERENCES jobs (id) ON DELETE CASCADE, 
    CONSTRAINT uq_inference_callbacks_task_event UNIQUE (task_id, event_id)
);

CREATE TABLE inference_models (
    id UUID NOT NULL, 
    owner_id UUID, 
    name VARCHAR(200) NOT NULL, 
    kind VARCHAR(16) NOT NULL, 
    file_id UUID NOT NULL, 
    spec JSONB NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE, 
    CONSTRAINT uq_inference_models_owner_name UNIQUE (owner_id, name)
);

CREATE TABLE inference_tasks (
    id UUID NOT NULL, 
    owner_id UUID, 
    slide_id UUID NOT NULL, 
    model_kind VARCHAR(16) NOT NULL, 
    model_name VARCHAR(200) NOT NULL, 
    model_id UUID, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(id) REFERENCES jobs (id) ON DELETE CASCADE, 
    FOREIGN KEY(slide_id) REFERENCES slides (id) ON DELETE CASCADE
);

CREATE INDEX ix_inference_services_created_at ON inference_services (created_at);

CREATE INDEX ix_inference_services_owner_id ON inference_services (owner_id);

CREATE INDEX ix_inference_models_created_at ON inference_models (created_at);

CREATE INDEX ix_inference_models_owner_id ON inference_models (owner_id);

CREATE INDEX ix_inference_tasks_created_at ON inference_tasks (created_at);

CREATE INDEX ix_inference_tasks_model_name ON inference_tasks (model_name);

CREATE INDEX ix_inference_tasks_owner_id ON inference_tasks (owner_id);

CREATE INDEX ix_inference_tasks_slide_id ON inference_tasks (slide_id);

CREATE INDEX ix_inference_callbacks_owner_id ON inference_callbacks (owner_id);

CREATE INDEX ix_inference_callbacks_task_id ON inference_callbacks (task_id);

CREATE INDEX IF NOT EXISTS "ix_inference_models_owner_id" ON "inference_models" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "inference_models" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "inference_models_owner_select" ON "inference_models";
    CREATE POLICY "inference_models_owner_select" ON "inference_models" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_models_owner_insert" ON "inference_models";
    CREATE POLICY "inference_models_owner_insert" ON "inference_models" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_models_owner_update" ON "inference_models";
    CREATE POLICY "inference_models_owner_update" ON "inference_models" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_models_owner_delete" ON "inference_models";
    CREATE POLICY "inference_models_owner_delete" ON "inference_models" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_inference_services_owner_id" ON "inference_services" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "inference_services" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "inference_services_owner_select" ON "inference_services";
    CREATE POLICY "inference_services_owner_select" ON "inference_services" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_services_owner_insert" ON "inference_services";
    CREATE POLICY "inference_services_owner_insert" ON "inference_services" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_services_owner_update" ON "inference_services";
    CREATE POLICY "inference_services_owner_update" ON "inference_services" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_services_owner_delete" ON "inference_services";
    CREATE POLICY "inference_services_owner_delete" ON "inference_services" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_inference_tasks_owner_id" ON "inference_tasks" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "inference_tasks" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "inference_tasks_owner_select" ON "inference_tasks";
    CREATE POLICY "inference_tasks_owner_select" ON "inference_tasks" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_tasks_owner_insert" ON "inference_tasks";
    CREATE POLICY "inference_tasks_owner_insert" ON "inference_tasks" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_tasks_owner_update" ON "inference_tasks";
    CREATE POLICY "inference_tasks_owner_update" ON "inference_tasks" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_tasks_owner_delete" ON "inference_tasks";
    CREATE POLICY "inference_tasks_owner_delete" ON "inference_tasks" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS "ix_inference_callbacks_owner_id" ON "inference_callbacks" ("owner_id");

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') AND to_regprocedure('auth.uid()') IS NOT NULL THEN
    ALTER TABLE "inference_callbacks" ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS "inference_callbacks_owner_select" ON "inference_callbacks";
    CREATE POLICY "inference_callbacks_owner_select" ON "inference_callbacks" AS PERMISSIVE FOR SELECT TO authenticated USING ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_callbacks_owner_insert" ON "inference_callbacks";
    CREATE POLICY "inference_callbacks_owner_insert" ON "inference_callbacks" AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_callbacks_owner_update" ON "inference_callbacks";
    CREATE POLICY "inference_callbacks_owner_update" ON "inference_callbacks" AS PERMISSIVE FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = owner_id) WITH CHECK ((SELECT auth.uid()) = owner_id);
    DROP POLICY IF EXISTS "inference_callbacks_owner_delete" ON "inference_callbacks";
    CREATE POLICY "inference_callbacks_owner_delete" ON "inference_callbacks" AS PERMISSIVE FOR DELETE TO authenticated USING ((SELECT auth.uid()) = owner_id);
  END IF;
END
$$;

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0005';
