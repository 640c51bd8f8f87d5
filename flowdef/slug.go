package flowdef

import "regexp"

// MaxSlugLen is the longest flow or step slug. A flow version's queue is
// named <slug>_<version>, and pgmq caps queue names at 47 bytes.
const MaxSlugLen = 40

// SlugPattern is the rule for flow and step slugs: a lowercase letter, then
// lowercase letters, digits or underscores, MaxSlugLen characters at most.
// The engine's tables check the same pattern.
const SlugPattern = `^[a-z][a-z0-9_]{0,39}$`

var slugRE = regexp.MustCompile(SlugPattern)

// ValidSlug reports whether s may name a flow or a step (see SlugPattern).
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// InputKey is the key of the flow input in a task's input object, and so a
// slug no step may have. The other keys are the slugs of the step's
// dependencies, each holding that dependency's output.
const InputKey = "run"
