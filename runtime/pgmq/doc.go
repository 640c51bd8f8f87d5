// Package pgmq is a Go client for pgmq's SQL API.
package pgmq
