declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the run's PostgreSQL server (see global-setup.ts). */
    postgresAdminUrl: string
  }
}

export {}
