// The original contract's facts that the suites driving the whole system through its gateway check: the
// end-to-end tests (test/e2e, a local system) and the live-cluster suite (test/cluster).
import { expect } from 'vitest'

/** A task as a client of the original sample writes it: every field set. */
export const originalTask = {
  title: 'Write the release notes',
  description: 'For version 1.0',
  status: 'in_progress',
  priority: 'high',
  user_id: 7,
  project_id: 3,
  due_date: '2026-12-01T17:00:00Z',
  tags: ['docs', 'release'],
}

/** The shape of the gateway's GET / (the values change with every release). */
export const gatewayRoot = {
  service: expect.any(String),
  version: expect.any(String),
  architecture: expect.any(String),
  services: { tasks: expect.any(String), users: expect.any(String), projects: expect.any(String) },
}

/** The gateway's GET /health when every service answers. */
export const allHealthy = {
  gateway: 'healthy',
  services: { 'task-service': 'healthy', 'user-service': 'healthy', 'project-service': 'healthy' },
}
