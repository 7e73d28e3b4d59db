package tsp

import (
	"github.com/mipay-oss/mipay"
)

// Action is a lifecycle request on a token.
type Action string

const (
	ActionActivate Action = "activate" // additional authentication passed
	ActionSuspend  Action = "suspend"
	ActionResume   Action = "resume"
	ActionDelete   Action = "delete"
)

// Transition returns the state a token in state from moves to on action by
// who, or a *mipay.Error (ECONFLICT for a transition the state machine does not
// have, EFORBIDDEN for one this party may not make).
//
//	INACTIVE  --activate-->  ACTIVE
//	ACTIVE    --suspend--->  SUSPENDED
//	SUSPENDED --resume---->  ACTIVE     (an issuer suspension only by the issuer)
//	any but DEACTIVATED --delete--> DEACTIVATED (final)
//
// suspendedBy is who suspended the token (for resume).
func Transition(from State, action Action, who, suspendedBy CausedBy) (State, error) {
	if from == StateDeactivated {
		return from, &mipay.Error{Code: mipay.ECONFLICT, Reason: "TOKEN_DELETED", Message: "this card was removed"}
	}
	switch action {
	case ActionActivate:
		if from == StateInactive {
			return StateActive, nil
		}
		if from == StateActive {
			return from, &mipay.Error{Code: mipay.ECONFLICT, Reason: "ALREADY_ACTIVE", Message: "this card is already active"}
		}
	case ActionSuspend:
		if from == StateActive {
			return StateSuspended, nil
		}
		if from == StateSuspended {
			return from, &mipay.Error{Code: mipay.ECONFLICT, Reason: "ALREADY_SUSPENDED", Message: "this card is already suspended"}
		}
	case ActionResume:
		if from == StateSuspended {
			if suspendedBy == CausedByIssuer && who != CausedByIssuer {
				return from, &mipay.Error{Code: mipay.EFORBIDDEN, Reason: "ISSUER_SUSPENDED", Message: "your bank suspended this card; please contact your bank"}
			}
			return StateActive, nil
		}
		if from == StateActive {
			return from, &mipay.Error{Code: mipay.ECONFLICT, Reason: "NOT_SUSPENDED", Message: "this card is not suspended"}
		}
	case ActionDelete:
		return StateDeactivated, nil
	default:
		return from, mipay.Errorf(mipay.EINVALID, "unknown action %q", action)
	}
	return from, &mipay.Error{Code: mipay.ECONFLICT, Reason: "WRONG_STATE", Message: "this card cannot be " + pastTense(action) + " while it is " + stateWord(from)}
}

func pastTense(a Action) string {
	switch a {
	case ActionActivate:
		return "activated"
	case ActionSuspend:
		return "suspended"
	case ActionResume:
		return "resumed"
	}
	return "changed"
}

func stateWord(s State) string {
	switch s {
	case StateInactive:
		return "waiting for verification"
	case StateActive:
		return "active"
	case StateSuspended:
		return "suspended"
	}
	return "removed"
}
