// Package templates embeds the text/templates qflowgen uses for output
// that is not Go: Mermaid diagrams and SQL migrations.
package templates
