import type { AddressInfo } from 'node:net'
import { expect } from 'vitest'

export interface Answer {
  status: number
  type: string | null
  headers: Headers
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, inspected by the test
  body: any
}

export type Call = (
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<Answer>

/** Listens on a free loopback port (real HTTP, not inject) and returns the base URL. */
export async function listenOnLoopback(app: {
  listen(options: { host: string; port: number }): Promise<string>
  server: { address(): unknown }
}): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** A JSON client for `base`: objects are sent as JSON, strings as they are. */
export function jsonCaller(base: string, defaults: Record<string, string> = {}): Call {
  return async (method, path, body, headers = {}) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        ...defaults,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    })
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      // not JSON: the test sees the text
    }
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      headers: response.headers,
      body: parsed,
    }
  }
}

/** A 422 problem+json whose detail and `errors[]` name `field` in `where` (body, params, querystring, headers). */
export function expectFieldRefused(answer: Answer, where: string, field: string): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(422)
  expect(answer.type).toMatch(/^application\/problem\+json/)
  expect(answer.body.detail).toContain(`'${field}'`)
  expect(answer.body.errors).toContainEqual(expect.objectContaining({ in: where, field }))
}
