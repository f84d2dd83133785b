/// The gateway's API description (OpenAPI 3.1), served at `/openapi.json` and shown at
/// `/docs`. Every route of `Gateway.buildRouter()` is described here; a test compares
/// the two, so a new route without a description fails the build's tests.
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Sluice gateway",
    "version": "1.0.0",
    "description": "The HTTP front of Sluice. Every completion request becomes a Kafka job like any other; the gateway submits it, follows the job's events on Redis and answers in the shape the client speaks (OpenAI, LLMstudio, Portkey, Smarter), or through the job API. Errors are JSON `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. With `gateway.api_keys` configured, requests need a key (`Authorization: Bearer KEY`, or `x-portkey-api-key`); a job id belongs to the tenant that first submitted it, and the job is visible only to that tenant. Request bodies must be `application/json` (415 otherwise)."
  },
  "tags": [
    {
      "name": "OpenAI",
      "description": "OpenAI-compatible chat completions."
    },
    {
      "name": "LLMstudio",
      "description": "LLMstudio-compatible engine API."
    },
    {
      "name": "Portkey",
      "description": "Portkey-compatible prompt completions over `prompts_dir` templates."
    },
    {
      "name": "Smarter",
      "description": "Smarter-compatible passthrough to a provider."
    },
    {
      "name": "Jobs",
      "description": "Submit, follow, read and cancel jobs."
    },
    {
      "name": "Operations",
      "description": "Health, readiness, metrics, providers and this description."
    }
  ],
  "security": [
    {
      "bearerAuth": []
    },
    {
      "portkeyApiKey": []
    }
  ],
  "paths": {
    "/v1/chat/completions": {
      "post": {
        "tags": [
          "OpenAI"
        ],
        "operationId": "createChatCompletion",
        "summary": "Create a chat completion (OpenAI-compatible)",
        "description": "The official OpenAI SDKs work with `base_url` set to the gateway's `/v1`. With `stream: true`: one `data: {chat.completion.chunk}` line per chunk (the provider's chunk, byte for byte), then `data: [DONE]`; no `event:` lines; `: keep-alive` comments every 15 s. The usage-only chunk (`choices: []`) is sent only with `stream_options.include_usage`. A failure mid-stream is a `data: {\"error\": {...}}` line, then `data: [DONE]`. Otherwise a `chat.completion`: the unified response, with `usage`, `metrics` and `job_id`. A client that disconnects before the end cancels its job (`gateway.cancel_on_disconnect`).",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/ChatCompletionRequest"
              },
              "example": {
                "model": "default",
                "messages": [
                  {
                    "role": "user",
                    "content": "Tell me a joke"
                  }
                ],
                "stream": false
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "The completion, or its chunks as Server-Sent Events.",
            "headers": {
              "X-Sluice-Job-Id": {
                "description": "The job this request became: GET /v1/jobs/{id} and its events.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ChatCompletion"
                }
              },
              "text/event-stream": {
                "schema": {
                  "type": "string",
                  "description": "With `stream: true`: one `data: {chat.completion.chunk}` line per chunk (the provider's chunk, byte for byte), then `data: [DONE]`; no `event:` lines; `: keep-alive` comments every 15 s. The usage-only chunk (`choices: []`) is sent only with `stream_options.include_usage`. A failure mid-stream is a `data: {\"error\": {...}}` line, then `data: [DONE]`."
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "403": {
            "$ref": "#/components/responses/ModelNotAllowed"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "413": {
            "$ref": "#/components/responses/TooLarge"
          },
          "415": {
            "$ref": "#/components/responses/UnsupportedMediaType"
          },
          "429": {
            "$ref": "#/components/responses/ProviderError"
          },
          "502": {
            "$ref": "#/components/responses/ProviderError"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          },
          "504": {
            "$ref": "#/components/responses/ProviderError"
          }
        }
      }
    },
    "/api/engine/chat/{provider}": {
      "post": {
        "tags": [
          "LLMstudio"
        ],
        "operationId": "llmstudioChat",
        "summary": "Chat with a provider (LLMstudio-compatible)",
        "description": "LLMstudio's request: `chat_input` is one user turn; `api_key` is the provider's key for this request (never logged or echoed). `is_stream` (default false) streams the job's `chat.completion.chunk`s as `data:` lines then `data: [DONE]` (LLMstudio streams bare text; Sluice streams the same chunks as its OpenAI endpoint so nothing is lost). Otherwise LLMstudio's response, of which the unified response is a superset.",
        "parameters": [
          {
            "name": "provider",
            "in": "path",
            "required": true,
            "description": "A configured provider's name.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/LLMstudioRequest"
              },
              "example": {
                "api_key": null,
                "model": "gpt-4o-mini",
                "chat_input": "Hello! Who are you?",
                "parameters": {
                  "temperature": 1,
                  "max_tokens": 2048
                },
                "is_stream": false
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "LLMstudio's response, or the chunks as Server-Sent Events.",
            "headers": {
              "X-Sluice-Job-Id": {
                "description": "The job this request became: GET /v1/jobs/{id} and its events.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ChatCompletion"
                }
              },
              "text/event-stream": {
                "schema": {
                  "type": "string",
                  "description": "`data: {chat.completion.chunk}` lines, then `data: [DONE]`."
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "403": {
            "$ref": "#/components/responses/ModelNotAllowed"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "413": {
            "$ref": "#/components/responses/TooLarge"
          },
          "415": {
            "$ref": "#/components/responses/UnsupportedMediaType"
          },
          "429": {
            "$ref": "#/components/responses/ProviderError"
          },
          "502": {
            "$ref": "#/components/responses/ProviderError"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          },
          "504": {
            "$ref": "#/components/responses/ProviderError"
          }
        }
      }
    },
    "/v1/prompts/{prompt_id}/completions": {
      "post": {
        "tags": [
          "Portkey"
        ],
        "operationId": "createPromptCompletion",
        "summary": "Complete a prompt template (Portkey-compatible)",
        "description": "Renders `prompts_dir/{prompt_id}.yaml` with `variables` before submitting anything: an unknown prompt is a 404 and a missing variable a 400 naming it. Hyperparameters at the top level (or under `parameters`) override the template's. The `portkey-ai` SDK works with its base URL set to the gateway's `/v1` (it sends its key as `x-portkey-api-key`). `stream` (default false) as for `/v1/chat/completions`.",
        "parameters": [
          {
            "name": "prompt_id",
            "in": "path",
            "required": true,
            "description": "A template in `prompts_dir`.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/PromptCompletionRequest"
              },
              "example": {
                "variables": {
                  "name": "Ada",
                  "city": "London"
                },
                "max_tokens": 250,
                "stream": false
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "A `chat.completion`, or its chunks as Server-Sent Events.",
            "headers": {
              "X-Sluice-Job-Id": {
                "description": "The job this request became: GET /v1/jobs/{id} and its events.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ChatCompletion"
                }
              },
              "text/event-stream": {
                "schema": {
                  "type": "string",
                  "description": "`data: {chat.completion.chunk}` lines, then `data: [DONE]`."
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "403": {
            "$ref": "#/components/responses/ModelNotAllowed"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "413": {
            "$ref": "#/components/responses/TooLarge"
          },
          "415": {
            "$ref": "#/components/responses/UnsupportedMediaType"
          },
          "429": {
            "$ref": "#/components/responses/ProviderError"
          },
          "502": {
            "$ref": "#/components/responses/ProviderError"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          },
          "504": {
            "$ref": "#/components/responses/ProviderError"
          }
        }
      }
    },
    "/api/v1/prompts/passthrough/{provider}/": {
      "post": {
        "tags": [
          "Smarter"
        ],
        "operationId": "passthrough",
        "summary": "Send a body to a provider as it is (Smarter-compatible)",
        "description": "Any JSON object the provider's API accepts becomes a passthrough job (`passthrough: true`, `body`); the answer is the provider's own response (the result's `raw`). `\"stream\": true` in the body streams the provider's chunks as `data:` lines, then `data: [DONE]`. Missing or bad credentials are a 403 here, as in Smarter.",
        "parameters": [
          {
            "name": "provider",
            "in": "path",
            "required": true,
            "description": "A configured provider's name.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/PassthroughBody"
              },
              "example": {
                "model": "gpt-4o-mini",
                "messages": [
                  {
                    "role": "user",
                    "content": "Hello"
                  }
                ]
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "The provider's own response, or its chunks as Server-Sent Events.",
            "headers": {
              "X-Sluice-Job-Id": {
                "description": "The job this request became: GET /v1/jobs/{id} and its events.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "description": "The provider's response body, as it sent it."
                }
              },
              "text/event-stream": {
                "schema": {
                  "type": "string",
                  "description": "`data: {chunk}` lines, then `data: [DONE]`."
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "403": {
            "description": "No API key or an unknown one (Smarter answers 403), or a provider or model the key's tenant may not use (`code`: `model_not_allowed`).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "413": {
            "$ref": "#/components/responses/TooLarge"
          },
          "415": {
            "$ref": "#/components/responses/UnsupportedMediaType"
          },
          "429": {
            "$ref": "#/components/responses/ProviderError"
          },
          "502": {
            "$ref": "#/components/responses/ProviderError"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          },
          "504": {
            "$ref": "#/components/responses/ProviderError"
          }
        }
      }
    },
    "/v1/jobs": {
      "post": {
        "tags": [
          "Jobs"
        ],
        "operationId": "submitJob",
        "summary": "Submit a job",
        "description": "A job in the shape of the requests topic (the requests topic's job schema); its tenant comes from the API key. The job runs asynchronously: follow it at `events_url`. A job id is the submitting tenant's until the job's keys expire (`redis.event_ttl_s` after it ends): another tenant's submission of it is refused with 409.",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/Job"
              },
              "example": {
                "model": "default",
                "messages": [
                  {
                    "role": "user",
                    "content": "Hello! Who are you?"
                  }
                ],
                "stream": true
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Accepted: produced to the requests topic. A resubmission of an id the same tenant already holds is answered with that job, as it stands, and nothing is produced again (the id works as an idempotency key).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "403": {
            "$ref": "#/components/responses/ModelNotAllowed"
          },
          "409": {
            "$ref": "#/components/responses/Conflict"
          },
          "413": {
            "$ref": "#/components/responses/TooLarge"
          },
          "415": {
            "$ref": "#/components/responses/UnsupportedMediaType"
          },
          "429": {
            "description": "The key's tenant already has `gateway.max_jobs_per_tenant` jobs in flight (`code`: `too_many_jobs`); the id stays free. Retry after `Retry-After` seconds.",
            "headers": {
              "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {
                  "type": "integer"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          }
        }
      }
    },
    "/v1/jobs/{id}": {
      "parameters": [
        {
          "name": "id",
          "in": "path",
          "required": true,
          "description": "The job id (letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit; 1 to 128 characters). Anything else is a 400.",
          "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"
          }
        }
      ],
      "get": {
        "tags": [
          "Jobs"
        ],
        "operationId": "getJob",
        "summary": "A job's status, and its result once there",
        "responses": {
          "200": {
            "description": "`queued`, `running` (with `last_event`), `cancelling`, or the final status with the result.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobStatus"
                }
              }
            }
          },
          "400": {
            "description": "The id does not follow the id rule (`code`: `invalid_job_id`).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          }
        }
      },
      "delete": {
        "tags": [
          "Jobs"
        ],
        "operationId": "cancelJob",
        "summary": "Cancel a job",
        "description": "Produces `{\"type\": \"cancel\", \"job_id\": id}` (keyed by the job id) to the control topic; the worker running the job stops it and its result says `cancelled`. A job already finished is left as it is (200 with its final status). The cancel names the job's tenant and submission: it cannot stop a later job that reuses the id, and it holds for `redis.event_ttl_s`.",
        "responses": {
          "202": {
            "description": "The cancel message was produced.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/CancelAccepted"
                }
              }
            }
          },
          "200": {
            "description": "The job had already finished.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/CancelAccepted"
                }
              }
            }
          },
          "400": {
            "description": "The id does not follow the id rule (`code`: `invalid_job_id`).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          }
        }
      }
    },
    "/v1/jobs/{id}/events": {
      "get": {
        "tags": [
          "Jobs"
        ],
        "operationId": "jobEvents",
        "summary": "Follow a job's events (Server-Sent Events, resumable)",
        "description": "Every event of the job as `id: seq`, `event: name`, `data: {event JSON}`: what already happened, then live, ending after `chat_finished`. `Last-Event-ID` (or `?last_event_id=`) resumes after that seq with no gap and no repeat. `: keep-alive` every 15 s. A reader that falls more than `gateway.reader_buffer_events` events behind the job is cut (the stream ends before `chat_finished`): resume with `Last-Event-ID`. A tenant holds at most `gateway.max_readers_per_tenant` streams open on one gateway process; more are answered 429.",
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The job id (letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit; 1 to 128 characters). Anything else is a 400.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 128,
              "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"
            }
          },
          {
            "name": "Last-Event-ID",
            "in": "header",
            "required": false,
            "description": "Resume after this event's seq: an integer from 0 to 9007199254740991; anything else is a 400.",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 9007199254740991
            }
          },
          {
            "name": "last_event_id",
            "in": "query",
            "required": false,
            "description": "As `Last-Event-ID`, for clients that cannot set headers.",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 9007199254740991
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The event stream; each `data:` is a JobEvent.",
            "content": {
              "text/event-stream": {
                "schema": {
                  "type": "string"
                },
                "x-event-schema": {
                  "$ref": "#/components/schemas/JobEvent"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/BadRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "429": {
            "description": "The key's tenant already holds `gateway.max_readers_per_tenant` event streams on this gateway process (`code`: `too_many_readers`). Retry after `Retry-After` seconds or close a stream.",
            "headers": {
              "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {
                  "type": "integer"
                }
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "$ref": "#/components/responses/Unavailable"
          }
        }
      }
    },
    "/v1/providers": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "listProviders",
        "summary": "The providers (name and kind) and model aliases the key's tenant may use",
        "responses": {
          "200": {
            "description": "The providers.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ProviderList"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          }
        }
      }
    },
    "/healthz": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "healthz",
        "summary": "Liveness",
        "security": [],
        "responses": {
          "200": {
            "description": "The process is up.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Health"
                },
                "example": {
                  "status": "ok"
                }
              }
            }
          }
        }
      }
    },
    "/readyz": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "readyz",
        "summary": "Readiness: Kafka and Redis reachable",
        "security": [],
        "description": "Redis must answer PING and a Kafka broker a metadata request, each within 2 s. Anyone gets `status`; `checks`, with each error, only with the admin key (`gateway.admin_key_env`), or from an open gateway with no admin key configured.",
        "responses": {
          "200": {
            "description": "Ready.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Readiness"
                }
              }
            }
          },
          "503": {
            "description": "Kafka or Redis is not reachable; with the admin key, `checks` says which.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Readiness"
                }
              }
            }
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "security": [
          {
            "adminKey": []
          }
        ],
        "description": "`sluice_gateway_requests_total{route,method,status}`, `sluice_gateway_sse_readers`, `sluice_gateway_jobs_submitted_total{api}`, `sluice_gateway_jobs_cancelled_total{reason}`. Needs the admin key (`gateway.admin_key_env`, sent as `Authorization: Bearer KEY`); served without one only by an open gateway with no admin key configured.",
        "responses": {
          "200": {
            "description": "The text exposition format.",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/AdminOnly"
          },
          "403": {
            "description": "The gateway has API keys but no admin key is configured: set `gateway.admin_key_env`.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "openapi",
        "summary": "This description (OpenAPI 3.1)",
        "security": [],
        "responses": {
          "200": {
            "description": "The OpenAPI document.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    },
    "/": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "console",
        "summary": "The live console: submit a prompt, watch its tokens stream, see its metrics",
        "security": [],
        "responses": {
          "200": {
            "description": "A self-contained HTML page.",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/docs": {
      "get": {
        "tags": [
          "Operations"
        ],
        "operationId": "docs",
        "summary": "A page that shows this description",
        "security": [],
        "responses": {
          "200": {
            "description": "A self-contained HTML page.",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A key from `gateway.api_keys` (`Authorization: Token KEY` is accepted too)."
      },
      "portkeyApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-portkey-api-key",
        "description": "The same key, as the Portkey SDK sends it."
      },
      "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operators' key, from the variable `gateway.admin_key_env` names: for `/metrics` and the detailed `/readyz`."
      }
    },
    "responses": {
      "BadRequest": {
        "description": "Invalid JSON, a missing or mistyped field or a value out of its range (named in `message` and `param`), an unknown model or a missing template variable.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            },
            "example": {
              "error": {
                "message": "missing required field \"model\"",
                "type": "invalid_request_error",
                "param": "model",
                "code": "missing_field"
              }
            }
          }
        }
      },
      "Unauthorized": {
        "description": "No API key, or an unknown one (when keys are configured).",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "Forbidden": {
        "description": "No API key, or an unknown one (when keys are configured).",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "NotFound": {
        "description": "No such job (or another tenant's), provider, prompt or model.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "TooLarge": {
        "description": "The body is larger than `gateway.max_body_bytes`, or the job it makes is larger than the requests topic takes (`kafka.max_message_bytes`).",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "ProviderError": {
        "description": "The job failed: a provider's 4xx passes through (429 stays 429), other provider failures are 502, a timeout 504, a cancelled job 409; a job that expired held by a provider's 429s is a 429, one that expired in the queue (deadline, max_queue_s) a 504.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "Unavailable": {
        "description": "Kafka or Redis is not reachable.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "Conflict": {
        "description": "The job id is in use by another tenant's job (or by one whose owner is unknown): submit with another id. The answer says nothing of that job.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "ModelNotAllowed": {
        "description": "The API key's tenant may not use this provider or model (`gateway.api_keys[].providers`, `models`); `code` is `model_not_allowed` and the message names the model.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "UnsupportedMediaType": {
        "description": "The body is not declared JSON: send `Content-Type: application/json`.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      },
      "AdminOnly": {
        "description": "Needs the admin key (`gateway.admin_key_env`): 401 without it or with another key.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": [
          "error"
        ],
        "properties": {
          "error": {
            "type": "object",
            "required": [
              "message",
              "type"
            ],
            "properties": {
              "message": {
                "type": "string",
                "description": "What was wrong and what to do."
              },
              "type": {
                "type": "string",
                "description": "`invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`, `provider_error`, `rate_limit_error`, `timeout`, `cancelled`, `service_unavailable`, `server_error`."
              },
              "param": {
                "type": [
                  "string",
                  "null"
                ],
                "description": "The request field at fault."
              },
              "code": {
                "type": [
                  "string",
                  "null"
                ],
                "description": "A machine-readable reason."
              }
            }
          }
        }
      },
      "Message": {
        "type": "object",
        "required": [
          "role"
        ],
        "properties": {
          "role": {
            "type": "string"
          },
          "content": {
            "type": [
              "string",
              "array",
              "null"
            ]
          },
          "name": {
            "type": "string"
          },
          "tool_calls": {
            "type": "array"
          },
          "tool_call_id": {
            "type": "string"
          }
        }
      },
      "ChatCompletionRequest": {
        "type": "object",
        "required": [
          "model",
          "messages"
        ],
        "properties": {
          "model": {
            "type": "string",
            "description": "A model alias, `provider/model`, or a model of the alias's provider."
          },
          "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
              "$ref": "#/components/schemas/Message"
            }
          },
          "stream": {
            "type": "boolean",
            "default": false
          },
          "stream_options": {
            "type": "object",
            "properties": {
              "include_usage": {
                "type": "boolean"
              }
            }
          },
          "metadata": {
            "type": "object"
          },
          "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2
          },
          "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "max_completion_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "top_p": {
            "type": "number",
            "minimum": 0,
            "maximum": 1
          },
          "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": 128
          },
          "stop": {
            "oneOf": [
              {
                "type": "string"
              },
              {
                "type": "array",
                "maxItems": 16,
                "items": {
                  "type": "string"
                }
              }
            ]
          },
          "presence_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "frequency_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "seed": {
            "type": "integer",
            "minimum": -2147483648,
            "maximum": 2147483647
          },
          "tools": {
            "type": "array",
            "maxItems": 128,
            "items": {
              "type": "object"
            }
          },
          "tool_choice": {},
          "response_format": {
            "type": "object"
          },
          "user": {
            "type": "string",
            "maxLength": 256
          },
          "logprobs": {
            "type": "boolean"
          },
          "top_logprobs": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20
          },
          "top_k": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647
          }
        }
      },
      "Usage": {
        "type": "object",
        "properties": {
          "prompt_tokens": {
            "type": "integer"
          },
          "completion_tokens": {
            "type": "integer"
          },
          "total_tokens": {
            "type": "integer"
          }
        }
      },
      "Metrics": {
        "type": "object",
        "properties": {
          "input_tokens": {
            "type": "integer"
          },
          "output_tokens": {
            "type": "integer"
          },
          "total_tokens": {
            "type": "integer"
          },
          "cost_usd": {
            "type": [
              "number",
              "null"
            ]
          },
          "latency_s": {
            "type": "number"
          },
          "time_to_first_token_s": {
            "type": [
              "number",
              "null"
            ]
          },
          "inter_token_latency_s": {
            "type": [
              "number",
              "null"
            ]
          },
          "tokens_per_second": {
            "type": [
              "number",
              "null"
            ]
          },
          "queue_wait_s": {
            "type": [
              "number",
              "null"
            ]
          },
          "rate_limit_wait_s": {
            "type": "number",
            "minimum": 0,
            "description": "Seconds the job was held by a provider's rate limit: waiting for the shared limiter's admission and waiting out 429s."
          },
          "attempts": {
            "type": "integer"
          },
          "usage_source": {
            "enum": [
              "provider",
              "estimated"
            ]
          },
          "stream_complete": {
            "type": "boolean"
          }
        }
      },
      "ChatCompletion": {
        "type": "object",
        "description": "The unified response: OpenAI's `chat.completion` plus LLMstudio's fields and Sluice's.",
        "required": [
          "id",
          "object",
          "created",
          "model",
          "choices"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "object": {
            "const": "chat.completion"
          },
          "created": {
            "type": "integer"
          },
          "model": {
            "type": "string"
          },
          "choices": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "index": {
                  "type": "integer"
                },
                "finish_reason": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "logprobs": {},
                "message": {
                  "type": "object",
                  "properties": {
                    "role": {
                      "type": "string"
                    },
                    "content": {
                      "type": [
                        "string",
                        "null"
                      ]
                    },
                    "function_call": {},
                    "tool_calls": {
                      "type": [
                        "array",
                        "null"
                      ]
                    }
                  }
                }
              }
            }
          },
          "usage": {
            "oneOf": [
              {
                "$ref": "#/components/schemas/Usage"
              },
              {
                "type": "null"
              }
            ]
          },
          "system_fingerprint": {
            "type": [
              "string",
              "null"
            ]
          },
          "session_id": {
            "type": [
              "string",
              "null"
            ]
          },
          "chat_input": {
            "type": [
              "string",
              "null"
            ]
          },
          "chat_output": {
            "type": [
              "string",
              "null"
            ]
          },
          "context": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Message"
            }
          },
          "provider": {
            "type": "string"
          },
          "timestamp": {
            "type": "number"
          },
          "parameters": {
            "type": "object"
          },
          "metrics": {
            "$ref": "#/components/schemas/Metrics"
          },
          "job_id": {
            "type": "string"
          },
          "status": {
            "enum": [
              "succeeded",
              "failed",
              "cancelled",
              "timed_out"
            ]
          },
          "error": {
            "type": [
              "object",
              "null"
            ],
            "properties": {
              "type": {
                "type": "string"
              },
              "message": {
                "type": "string"
              },
              "provider_status": {
                "type": [
                  "integer",
                  "null"
                ]
              },
              "retryable": {
                "type": "boolean"
              }
            }
          },
          "metadata": {},
          "raw": {
            "description": "For a passthrough job: the provider's own response."
          },
          "input_omitted": {
            "const": true,
            "description": "Present when `context` and `chat_input` were left out (`context` empty, `chat_input` null) because the input was larger than `worker.echo_input_max_bytes`."
          }
        }
      },
      "ChatCompletionChunk": {
        "type": "object",
        "required": [
          "id",
          "object",
          "choices"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "object": {
            "const": "chat.completion.chunk"
          },
          "created": {
            "type": "integer"
          },
          "model": {
            "type": "string"
          },
          "choices": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "index": {
                  "type": "integer"
                },
                "delta": {
                  "type": "object"
                },
                "finish_reason": {
                  "type": [
                    "string",
                    "null"
                  ]
                }
              }
            }
          },
          "usage": {
            "oneOf": [
              {
                "$ref": "#/components/schemas/Usage"
              },
              {
                "type": "null"
              }
            ]
          }
        }
      },
      "LLMstudioRequest": {
        "type": "object",
        "required": [
          "model",
          "chat_input"
        ],
        "properties": {
          "api_key": {
            "type": [
              "string",
              "null"
            ],
            "description": "The provider's API key for this request; default: the configured one."
          },
          "model": {
            "type": "string"
          },
          "chat_input": {
            "type": "string"
          },
          "parameters": {
            "description": "Hyperparameters: an object (or one written as a JSON string), or null. Hyperparameters, held to the ranges of the job API's (e.g. `temperature` 0 to 2, `max_tokens` 1 to 2147483647).",
            "type": [
              "object",
              "string",
              "null"
            ]
          },
          "is_stream": {
            "description": "A boolean, `\"true\"`/`\"false\"` or 0/1; default false.",
            "type": [
              "boolean",
              "string",
              "integer",
              "null"
            ]
          },
          "session_id": {
            "type": [
              "string",
              "null"
            ]
          }
        }
      },
      "PromptCompletionRequest": {
        "type": "object",
        "properties": {
          "variables": {
            "type": "object",
            "description": "The template's variables; each one the template uses is required."
          },
          "stream": {
            "type": "boolean",
            "default": false
          },
          "model": {
            "type": "string",
            "description": "Overrides the template's model."
          },
          "parameters": {
            "type": "object"
          },
          "stream_options": {
            "type": "object"
          },
          "metadata": {},
          "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2
          },
          "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "max_completion_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "top_p": {
            "type": "number",
            "minimum": 0,
            "maximum": 1
          },
          "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": 128
          },
          "stop": {
            "oneOf": [
              {
                "type": "string"
              },
              {
                "type": "array",
                "maxItems": 16,
                "items": {
                  "type": "string"
                }
              }
            ]
          },
          "presence_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "frequency_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "seed": {
            "type": "integer",
            "minimum": -2147483648,
            "maximum": 2147483647
          },
          "tools": {
            "type": "array",
            "maxItems": 128,
            "items": {
              "type": "object"
            }
          },
          "tool_choice": {},
          "response_format": {
            "type": "object"
          },
          "user": {
            "type": "string",
            "maxLength": 256
          },
          "logprobs": {
            "type": "boolean"
          },
          "top_logprobs": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20
          },
          "top_k": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647
          }
        }
      },
      "PassthroughBody": {
        "type": "object",
        "additionalProperties": true,
        "description": "Any body the provider's API accepts, sent as it is.",
        "properties": {
          "model": {
            "type": "string"
          },
          "stream": {
            "type": "boolean"
          }
        }
      },
      "Job": {
        "type": "object",
        "description": "Give exactly one of `messages`, `chat_input`, `prompt_id` (+ `variables`), `passthrough` (+ `body`). Every field has a type and a range; JSON may nest at most 64 levels. A job out of range is a 400 naming the field in `param` and `message`.",
        "properties": {
          "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
            "description": "Letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit; 1 to 128 characters. A new UUID when not given."
          },
          "provider": {
            "type": "string",
            "maxLength": 256
          },
          "model": {
            "type": "string",
            "maxLength": 256
          },
          "messages": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Message"
            },
            "maxItems": 4096,
            "minItems": 1
          },
          "chat_input": {
            "type": "string"
          },
          "prompt_id": {
            "type": "string",
            "maxLength": 256
          },
          "variables": {
            "type": "object",
            "maxProperties": 1024
          },
          "passthrough": {
            "type": "boolean"
          },
          "body": {
            "type": "object"
          },
          "parameters": {
            "type": "object"
          },
          "stream": {
            "type": "boolean",
            "default": true
          },
          "is_stream": {
            "type": [
              "boolean",
              "string"
            ]
          },
          "session_id": {
            "type": "string",
            "maxLength": 256
          },
          "metadata": {
            "description": "Any JSON, carried into the result: at most 64 KiB as compact JSON."
          },
          "timeout_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 86400,
            "description": "Seconds the whole job may take, retries and fallbacks included; default `worker.default_timeout_s`."
          },
          "fallbacks": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "model"
              ],
              "properties": {
                "provider": {
                  "type": "string"
                },
                "model": {
                  "type": "string"
                }
              }
            },
            "maxItems": 5,
            "description": "Tried in order when the first target fails; at most `worker.max_fallbacks` (default 5)."
          },
          "api_key": {
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "pattern": "^[!-~]+$",
            "description": "A per-job provider key (printable ASCII, it is sent as a header); never logged, echoed or published."
          },
          "priority": {
            "enum": [
              "interactive",
              "batch"
            ],
            "default": "interactive",
            "description": "The job's lane: batch jobs go to the batch requests topic and get what interactive work leaves of the workers and of a provider's rate limit."
          },
          "deadline": {
            "oneOf": [
              {
                "type": "string",
                "format": "date-time"
              },
              {
                "type": "number",
                "exclusiveMinimum": 0
              }
            ],
            "description": "The latest time the job may start (RFC 3339, or seconds since the epoch). A job that cannot start in time, in the queue or held by a rate limit, ends failed with error type expired, without calling the provider."
          },
          "max_queue_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "The longest the job may wait after submission before it starts; then it ends failed with error type expired."
          },
          "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2
          },
          "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "max_completion_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647
          },
          "top_p": {
            "type": "number",
            "minimum": 0,
            "maximum": 1
          },
          "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": 128
          },
          "stop": {
            "oneOf": [
              {
                "type": "string"
              },
              {
                "type": "array",
                "maxItems": 16,
                "items": {
                  "type": "string"
                }
              }
            ]
          },
          "presence_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "frequency_penalty": {
            "type": "number",
            "minimum": -2,
            "maximum": 2
          },
          "seed": {
            "type": "integer",
            "minimum": -2147483648,
            "maximum": 2147483647
          },
          "tools": {
            "type": "array",
            "maxItems": 128,
            "items": {
              "type": "object"
            }
          },
          "tool_choice": {},
          "response_format": {
            "type": "object"
          },
          "user": {
            "type": "string",
            "maxLength": 256
          },
          "logprobs": {
            "type": "boolean"
          },
          "top_logprobs": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20
          },
          "top_k": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647
          }
        }
      },
      "JobAccepted": {
        "type": "object",
        "required": [
          "id",
          "status",
          "status_url",
          "events_url"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "enum": [
              "queued",
              "running",
              "cancelling",
              "succeeded",
              "failed",
              "cancelled",
              "timed_out"
            ],
            "description": "`queued` for a new job; for a resubmission, the existing job's status."
          },
          "status_url": {
            "type": "string"
          },
          "events_url": {
            "type": "string"
          }
        }
      },
      "JobStatus": {
        "type": "object",
        "required": [
          "id",
          "status",
          "result"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "enum": [
              "queued",
              "running",
              "cancelling",
              "succeeded",
              "failed",
              "cancelled",
              "timed_out"
            ]
          },
          "result": {
            "oneOf": [
              {
                "$ref": "#/components/schemas/ChatCompletion"
              },
              {
                "type": "null"
              }
            ]
          },
          "last_event": {
            "oneOf": [
              {
                "$ref": "#/components/schemas/JobEvent"
              },
              {
                "type": "null"
              }
            ]
          }
        }
      },
      "CancelAccepted": {
        "type": "object",
        "required": [
          "id",
          "status"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "type": "string",
            "description": "`cancelling`, or the final status of a job already finished."
          }
        }
      },
      "JobEvent": {
        "type": "object",
        "required": [
          "job_id",
          "seq",
          "event",
          "data",
          "ts"
        ],
        "properties": {
          "job_id": {
            "type": "string"
          },
          "seq": {
            "type": "integer",
            "minimum": 1
          },
          "event": {
            "enum": [
              "chat_started",
              "chat_completion_request",
              "chunk",
              "chat_completion_response",
              "chat_response_failure",
              "chat_finished"
            ]
          },
          "data": {},
          "ts": {
            "type": "number"
          }
        }
      },
      "ProviderList": {
        "type": "object",
        "properties": {
          "object": {
            "const": "list"
          },
          "data": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "name",
                "kind"
              ],
              "properties": {
                "name": {
                  "type": "string"
                },
                "kind": {
                  "type": "string"
                }
              }
            }
          },
          "models": {
            "type": "object",
            "additionalProperties": {
              "type": "object",
              "properties": {
                "provider": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "model": {
                  "type": "string"
                }
              }
            }
          }
        },
        "description": "The providers and model aliases the caller's tenant may use; no URL, version or key."
      },
      "Health": {
        "type": "object",
        "properties": {
          "status": {
            "const": "ok"
          }
        }
      },
      "Readiness": {
        "type": "object",
        "properties": {
          "status": {
            "enum": [
              "ready",
              "unavailable"
            ]
          },
          "checks": {
            "type": "object",
            "properties": {
              "redis": {
                "type": "object",
                "properties": {
                  "ok": {
                    "type": "boolean"
                  },
                  "error": {
                    "type": "string"
                  }
                }
              },
              "kafka": {
                "type": "object",
                "properties": {
                  "ok": {
                    "type": "boolean"
                  },
                  "error": {
                    "type": "string"
                  }
                }
              }
            },
            "description": "Only with the admin key."
          }
        },
        "required": [
          "status"
        ]
      }
    }
  }
}
"""#
}
