// Package gen is qflowgen as a library: it loads a Go package, reads its
// //qflow:flow and //qflow:step annotations, checks the DAG they describe
// and emits typed Go glue for the runtime.
package gen
