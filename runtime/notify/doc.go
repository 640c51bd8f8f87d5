// Package notify publishes and receives QuantumFlow events over PostgreSQL
// LISTEN/NOTIFY: typed events for every run, step and task transition, a
// listener that reconnects, and helpers to send a pgmq message together
// with a notification.
package notify
