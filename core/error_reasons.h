// The error reasons of iommud: every UPPER_SNAKE reason a status built with Error() (core/error.h)
// can carry, as constants. Server and clients compare reasons through these, never through string
// literals. Each reason's gRPC code, when it is raised, its metadata keys and what a client should
// do are in docs/errors.md; tests/docs/error_catalogue_test.py fails when a reason is raised
// anywhere without being here, or is here without being documented there.
//
// A status without a reason goes on the wire with its code's name as the reason (INTERNAL,
// UNAVAILABLE, ...: proto/status_codec.h); those names are not listed here.
#ifndef IOMMUD_CORE_ERROR_REASONS_H_
#define IOMMUD_CORE_ERROR_REASONS_H_

#include "absl/strings/string_view.h"

namespace iommud {
namespace reason {

// --- Lookups ---
// An object named in the request does not exist (or was released meanwhile).
inline constexpr absl::string_view kUnitNotFound = "UNIT_NOT_FOUND";
inline constexpr absl::string_view kDeviceNotFound = "DEVICE_NOT_FOUND";
inline constexpr absl::string_view kGroupNotFound = "GROUP_NOT_FOUND";
inline constexpr absl::string_view kDomainNotFound = "DOMAIN_NOT_FOUND";

// --- Units and registry set-up ---
// Adding units; creating the registry and its backend.
inline constexpr absl::string_view kUnitExists = "UNIT_EXISTS";
inline constexpr absl::string_view kUnitCapsMismatch = "UNIT_CAPS_MISMATCH";
inline constexpr absl::string_view kInvalidUnit = "INVALID_UNIT";
inline constexpr absl::string_view kUnsupportedCaps = "UNSUPPORTED_CAPS";
inline constexpr absl::string_view kMissingBackend = "MISSING_BACKEND";
inline constexpr absl::string_view kInvalidDefaultDomainType = "INVALID_DEFAULT_DOMAIN_TYPE";

// --- Device lifecycle ---
// ProbeDevice / ReleaseDevice.
inline constexpr absl::string_view kInvalidDeviceName = "INVALID_DEVICE_NAME";
inline constexpr absl::string_view kDeviceExists = "DEVICE_EXISTS";
inline constexpr absl::string_view kRidOutOfRange = "RID_OUT_OF_RANGE";
inline constexpr absl::string_view kRidsSpanGroups = "RIDS_SPAN_GROUPS";
inline constexpr absl::string_view kDomainTypeUnsupported = "DOMAIN_TYPE_UNSUPPORTED";

// --- DMA ownership ---
// UseDefaultDomain, ClaimOwnership, ClaimDevice and their releases; attach/detach ownership checks.
inline constexpr absl::string_view kMissingOwner = "MISSING_OWNER";
inline constexpr absl::string_view kGroupOwned = "GROUP_OWNED";
inline constexpr absl::string_view kDriverAlreadyBound = "DRIVER_ALREADY_BOUND";
inline constexpr absl::string_view kDriverNotBound = "DRIVER_NOT_BOUND";
inline constexpr absl::string_view kOwnerCountUnderflow = "OWNER_COUNT_UNDERFLOW";
inline constexpr absl::string_view kGroupInUse = "GROUP_IN_USE";
inline constexpr absl::string_view kGroupBusy = "GROUP_BUSY";
inline constexpr absl::string_view kGroupNotOwned = "GROUP_NOT_OWNED";
inline constexpr absl::string_view kNotOwner = "NOT_OWNER";
inline constexpr absl::string_view kDeviceAlreadyClaimed = "DEVICE_ALREADY_CLAIMED";
inline constexpr absl::string_view kDeviceNotClaimed = "DEVICE_NOT_CLAIMED";

// --- Leases ---
// Ownership leases (ClaimOwnership with a TTL, RenewLease, KeepLease).
inline constexpr absl::string_view kLeaseTtlOutOfRange = "LEASE_TTL_OUT_OF_RANGE";
inline constexpr absl::string_view kNoLease = "NO_LEASE";
inline constexpr absl::string_view kLeaseExpired = "LEASE_EXPIRED";
inline constexpr absl::string_view kLeaseAlreadyBound = "LEASE_ALREADY_BOUND";

// --- Domains and attachment ---
// AllocDomain, FreeDomain, AttachDevice, AttachGroup, DetachGroup.
inline constexpr absl::string_view kDomainTypeNotAllowed = "DOMAIN_TYPE_NOT_ALLOWED";
inline constexpr absl::string_view kCoreDomain = "CORE_DOMAIN";
inline constexpr absl::string_view kDomainInUse = "DOMAIN_IN_USE";
inline constexpr absl::string_view kDomainIncompatible = "DOMAIN_INCOMPATIBLE";
inline constexpr absl::string_view kDomainOfOtherUnit = "DOMAIN_OF_OTHER_UNIT";
inline constexpr absl::string_view kDomainExists = "DOMAIN_EXISTS";
inline constexpr absl::string_view kDomainNotAttached = "DOMAIN_NOT_ATTACHED";
// AttachDevice of a device whose group is attached (by another of its devices, or by AttachGroup)
// to another user domain (iommufd_hw_pagetable_attach: -EINVAL).
inline constexpr absl::string_view kGroupAttachedElsewhere = "GROUP_ATTACHED_ELSEWHERE";
// DetachDevice of a device that is not attached (its group is attached by other devices).
inline constexpr absl::string_view kDeviceNotAttached = "DEVICE_NOT_ATTACHED";
// ReplaceDomain on a backend that cannot move a group between domains without a blocking window
// (VFIO type1 containers).
inline constexpr absl::string_view kReplaceNotAtomic = "REPLACE_NOT_ATOMIC";

// --- Mappings and DMA ---
// Map, Unmap, Translate.
inline constexpr absl::string_view kDomainNotPaging = "DOMAIN_NOT_PAGING";
inline constexpr absl::string_view kInvalidProt = "INVALID_PROT";
inline constexpr absl::string_view kInvalidSize = "INVALID_SIZE";
inline constexpr absl::string_view kUnaligned = "UNALIGNED";
inline constexpr absl::string_view kOutOfAperture = "OUT_OF_APERTURE";
inline constexpr absl::string_view kPaddrOverflow = "PADDR_OVERFLOW";
inline constexpr absl::string_view kReservedRegion = "RESERVED_REGION";
inline constexpr absl::string_view kMappingExists = "MAPPING_EXISTS";
inline constexpr absl::string_view kUnmapSplit = "UNMAP_SPLIT";
// A raw paddr inside the region address space (core/memory_regions.h).
inline constexpr absl::string_view kPaddrInRegionSpace = "PADDR_IN_REGION_SPACE";

// --- Memory regions ---
// RegisterMemory / UnregisterMemory / MapRegion.
inline constexpr absl::string_view kRegionNotFound = "REGION_NOT_FOUND";
inline constexpr absl::string_view kRegionInUse = "REGION_IN_USE";
inline constexpr absl::string_view kInvalidRegionSize = "INVALID_REGION_SIZE";
inline constexpr absl::string_view kRegionRangeOutOfBounds = "REGION_RANGE_OUT_OF_BOUNDS";
inline constexpr absl::string_view kRegionSpaceExhausted = "REGION_SPACE_EXHAUSTED";
inline constexpr absl::string_view kRegionExists = "REGION_EXISTS";
inline constexpr absl::string_view kPinnedMemoryLimit = "PINNED_MEMORY_LIMIT";
inline constexpr absl::string_view kMemoryNeedsFd = "MEMORY_NEEDS_FD";
// A MapRequest naming both a region and a paddr.
inline constexpr absl::string_view kRegionAndPaddr = "REGION_AND_PADDR";
inline constexpr absl::string_view kEmptyBatch = "EMPTY_BATCH";
inline constexpr absl::string_view kInvalidAccess = "INVALID_ACCESS";

// --- Backends ---
// Backend factory, backend options and failures of the (emulated) hardware.
inline constexpr absl::string_view kBackendFailed = "BACKEND_FAILED";
inline constexpr absl::string_view kBackendExists = "BACKEND_EXISTS";
inline constexpr absl::string_view kUnknownBackend = "UNKNOWN_BACKEND";
inline constexpr absl::string_view kInvalidBackendOption = "INVALID_BACKEND_OPTION";
inline constexpr absl::string_view kMemoryFile = "MEMORY_FILE";
inline constexpr absl::string_view kCorruptMemoryFile = "CORRUPT_MEMORY_FILE";
inline constexpr absl::string_view kHwMemoryFull = "HW_MEMORY_FULL";
inline constexpr absl::string_view kTooManyDomains = "TOO_MANY_DOMAINS";
inline constexpr absl::string_view kTooManyUnits = "TOO_MANY_UNITS";
inline constexpr absl::string_view kSyncTimeout = "SYNC_TIMEOUT";

// --- Host (VFIO, sysfs) ---
// core/host/: the kernel-facing layer of a real host (sysfs inventory, vfio-pci binding, VFIO
// container, group and device, fd passing). Errors from a failed system call carry the errno name
// in their metadata ("errno"). core/host also raises DEVICE_NOT_FOUND, GROUP_NOT_FOUND, GROUP_BUSY
// and INVALID_ARGUMENT.
// sysfs
inline constexpr absl::string_view kSysfsReadFailed = "SYSFS_READ_FAILED";
inline constexpr absl::string_view kSysfsWriteFailed = "SYSFS_WRITE_FAILED";
inline constexpr absl::string_view kSysfsParseFailed = "SYSFS_PARSE_FAILED";
// vfio-pci binding
inline constexpr absl::string_view kDeviceNotBindable = "DEVICE_NOT_BINDABLE";
inline constexpr absl::string_view kDriverUnsafe = "DRIVER_UNSAFE";
inline constexpr absl::string_view kDriverNotLoaded = "DRIVER_NOT_LOADED";
inline constexpr absl::string_view kDriverBindFailed = "DRIVER_BIND_FAILED";
inline constexpr absl::string_view kDriverRestoreFailed = "DRIVER_RESTORE_FAILED";
inline constexpr absl::string_view kHostJournalFailed = "HOST_JOURNAL_FAILED";
// VFIO container
inline constexpr absl::string_view kVfioUnavailable = "VFIO_UNAVAILABLE";
inline constexpr absl::string_view kVfioApiMismatch = "VFIO_API_MISMATCH";
inline constexpr absl::string_view kVfioExtensionMissing = "VFIO_EXTENSION_MISSING";
inline constexpr absl::string_view kGroupSetContainerFailed = "GROUP_SET_CONTAINER_FAILED";
inline constexpr absl::string_view kGroupUnsetContainerFailed = "GROUP_UNSET_CONTAINER_FAILED";
inline constexpr absl::string_view kIommuSetFailed = "IOMMU_SET_FAILED";
inline constexpr absl::string_view kIommuInfoFailed = "IOMMU_INFO_FAILED";
inline constexpr absl::string_view kDmaMapFailed = "DMA_MAP_FAILED";
inline constexpr absl::string_view kDmaUnmapFailed = "DMA_UNMAP_FAILED";
// VFIO group
inline constexpr absl::string_view kGroupOpenFailed = "GROUP_OPEN_FAILED";
// A device fd was asked for a group that is not attached to a container (DeviceFdProvider).
inline constexpr absl::string_view kGroupNotAttached = "GROUP_NOT_ATTACHED";
// A region-space address that no registered process memory backs (MemoryResolver).
inline constexpr absl::string_view kMemoryNotRegistered = "MEMORY_NOT_REGISTERED";
// The linux backend.
inline constexpr absl::string_view kKmsgOpenFailed = "KMSG_OPEN_FAILED";
inline constexpr absl::string_view kDeviceFdOpen = "DEVICE_FD_OPEN";
inline constexpr absl::string_view kKernelManagedDomain = "KERNEL_MANAGED_DOMAIN";
inline constexpr absl::string_view kRidNotInKernelGroup = "RID_NOT_IN_KERNEL_GROUP";
inline constexpr absl::string_view kUnitNotOnHost = "UNIT_NOT_ON_HOST";
inline constexpr absl::string_view kMissingMemoryResolver = "MISSING_MEMORY_RESOLVER";
// The memory fd of a RegisterMemory (core/host/mapped_file.h).
inline constexpr absl::string_view kMemoryFdNotRegular = "MEMORY_FD_NOT_REGULAR";
inline constexpr absl::string_view kMemoryFdTooSmall = "MEMORY_FD_TOO_SMALL";
inline constexpr absl::string_view kMemoryMapFailed = "MEMORY_MAP_FAILED";
inline constexpr absl::string_view kGroupStatusFailed = "GROUP_STATUS_FAILED";
inline constexpr absl::string_view kGroupNotViable = "GROUP_NOT_VIABLE";
inline constexpr absl::string_view kDeviceFdFailed = "DEVICE_FD_FAILED";
// Kernel device removal (core/host/uevent_monitor.h, core/host/device_release_requests.h).
inline constexpr absl::string_view kUeventSocketFailed = "UEVENT_SOCKET_FAILED";
inline constexpr absl::string_view kReleaseRequestArmFailed = "RELEASE_REQUEST_ARM_FAILED";
// VFIO device
inline constexpr absl::string_view kDeviceInfoFailed = "DEVICE_INFO_FAILED";
inline constexpr absl::string_view kRegionInfoFailed = "REGION_INFO_FAILED";
inline constexpr absl::string_view kRegionNotMappable = "REGION_NOT_MAPPABLE";
inline constexpr absl::string_view kRegionMapFailed = "REGION_MAP_FAILED";
inline constexpr absl::string_view kConfigAccessFailed = "CONFIG_ACCESS_FAILED";
// fd passing (SCM_RIGHTS)
inline constexpr absl::string_view kFdSendFailed = "FD_SEND_FAILED";
inline constexpr absl::string_view kFdStoreUnavailable = "FD_STORE_UNAVAILABLE";
inline constexpr absl::string_view kFdStoreFailed = "FD_STORE_FAILED";
inline constexpr absl::string_view kFdReceiveFailed = "FD_RECEIVE_FAILED";

// --- Host: VFIO group hand-over ---
// core/host/group_handover.h: handing a VFIO group's /dev/vfio/N to a VMM's uid and taking it back.
inline constexpr absl::string_view kGroupNodeMissing = "GROUP_NODE_MISSING";
inline constexpr absl::string_view kGroupAlreadyHandedOver = "GROUP_ALREADY_HANDED_OVER";
inline constexpr absl::string_view kGroupStillOpen = "GROUP_STILL_OPEN";
inline constexpr absl::string_view kGroupNodeChownFailed = "GROUP_NODE_CHOWN_FAILED";
inline constexpr absl::string_view kProcScanFailed = "PROC_SCAN_FAILED";
// The HandOverGroup RPC (registry and backends; docs/semantics.md "Hand-over to a VMM").
inline constexpr absl::string_view kHandoverNeedsHostBackend = "HANDOVER_NEEDS_HOST_BACKEND";
inline constexpr absl::string_view kGroupHandedOver = "GROUP_HANDED_OVER";
inline constexpr absl::string_view kGroupNotHandedOver = "GROUP_NOT_HANDED_OVER";
inline constexpr absl::string_view kHandoverUidNotCallers = "HANDOVER_UID_NOT_CALLERS";

// --- Fault injection ---
// Scripted failures (test hosts).
inline constexpr absl::string_view kInjectedFault = "INJECTED_FAULT";
inline constexpr absl::string_view kInvalidFault = "INVALID_FAULT";
inline constexpr absl::string_view kFaultInjectionDisabled = "FAULT_INJECTION_DISABLED";

// --- Durable state ---
// The state store, recovery and the daemon's state file.
inline constexpr absl::string_view kStoreWriteFailed = "STORE_WRITE_FAILED";
inline constexpr absl::string_view kStateCorrupt = "STATE_CORRUPT";
inline constexpr absl::string_view kStateLocked = "STATE_LOCKED";
inline constexpr absl::string_view kStateMissing = "STATE_MISSING";
inline constexpr absl::string_view kStateOpenFailed = "STATE_OPEN_FAILED";
inline constexpr absl::string_view kStateExists = "STATE_EXISTS";
inline constexpr absl::string_view kNoStateStore = "NO_STATE_STORE";
inline constexpr absl::string_view kRegistryNotEmpty = "REGISTRY_NOT_EMPTY";
inline constexpr absl::string_view kRequestNotFound = "REQUEST_NOT_FOUND";
inline constexpr absl::string_view kRecovering = "RECOVERING";
// A unary call whose deadline passed before its handler ran (server/api/deadline_check.h).
inline constexpr absl::string_view kDeadlinePassed = "DEADLINE_PASSED";
// A WatchEvents stream ended (or refused) because the daemon began shutting down.
inline constexpr absl::string_view kServerShuttingDown = "SERVER_SHUTTING_DOWN";

// --- Request ids ---
// Idempotent retries of mutating calls.
inline constexpr absl::string_view kInvalidRequestId = "INVALID_REQUEST_ID";
inline constexpr absl::string_view kRequestIdReused = "REQUEST_ID_REUSED";
inline constexpr absl::string_view kRequestInProgress = "REQUEST_IN_PROGRESS";

// --- Request checks ---
// Decoding and bounds of a request before it reaches the registry.
inline constexpr absl::string_view kMalformedRequest = "MALFORMED_REQUEST";
inline constexpr absl::string_view kMissingField = "MISSING_FIELD";
inline constexpr absl::string_view kInvalidEnumValue = "INVALID_ENUM_VALUE";
inline constexpr absl::string_view kInvalidPageToken = "INVALID_PAGE_TOKEN";
inline constexpr absl::string_view kInvalidQueueSize = "INVALID_QUEUE_SIZE";
inline constexpr absl::string_view kFieldTooLong = "FIELD_TOO_LONG";
inline constexpr absl::string_view kTooManyElements = "TOO_MANY_ELEMENTS";
inline constexpr absl::string_view kNoEventStream = "NO_EVENT_STREAM";

// --- Fd channel ---
// The SOCK_SEQPACKET side channel that passes file descriptors (server/host/fd_channel.h).
inline constexpr absl::string_view kWrongFdCount = "WRONG_FD_COUNT";
inline constexpr absl::string_view kNoDeviceFds = "NO_DEVICE_FDS";

// --- Limits ---
// Per-principal limits (server/security/limits.h); also the labels of iommud_limited_total.
inline constexpr absl::string_view kRateLimited = "RATE_LIMITED";
inline constexpr absl::string_view kTooManyCalls = "TOO_MANY_CALLS";
inline constexpr absl::string_view kTooManyWatchers = "TOO_MANY_WATCHERS";
inline constexpr absl::string_view kTooManyClients = "TOO_MANY_CLIENTS";
inline constexpr absl::string_view kRequestTooLarge = "REQUEST_TOO_LARGE";

// --- Authorization ---
// The caller's role does not allow the call.
inline constexpr absl::string_view kPermissionDenied = "PERMISSION_DENIED";
// Admin-only requests (issue #15): raw physical addresses, IDENTITY domains.
inline constexpr absl::string_view kRawPaddrAdminOnly = "RAW_PADDR_ADMIN_ONLY";
inline constexpr absl::string_view kIdentityDomainAdminOnly = "IDENTITY_DOMAIN_ADMIN_ONLY";

// --- Daemon start-up ---
// Flags, configuration files, the state directory, sockets and TLS. These stop the daemon at start
// (exit status 1, one line naming the problem); clients never see them.
inline constexpr absl::string_view kInvalidFlag = "INVALID_FLAG";
inline constexpr absl::string_view kInvalidPolicy = "INVALID_POLICY";
inline constexpr absl::string_view kPolicyUnreadable = "POLICY_UNREADABLE";
inline constexpr absl::string_view kInvalidTopology = "INVALID_TOPOLOGY";
inline constexpr absl::string_view kTopologyUnreadable = "TOPOLOGY_UNREADABLE";
inline constexpr absl::string_view kUnknownUser = "UNKNOWN_USER";
inline constexpr absl::string_view kUnknownGroup = "UNKNOWN_GROUP";
inline constexpr absl::string_view kStateDirLocked = "STATE_DIR_LOCKED";
inline constexpr absl::string_view kStateDirUnusable = "STATE_DIR_UNUSABLE";
inline constexpr absl::string_view kSocketPathTooLong = "SOCKET_PATH_TOO_LONG";
inline constexpr absl::string_view kSocketPathNotSocket = "SOCKET_PATH_NOT_SOCKET";
inline constexpr absl::string_view kSocketInUse = "SOCKET_IN_USE";
inline constexpr absl::string_view kSocketCheckFailed = "SOCKET_CHECK_FAILED";
inline constexpr absl::string_view kSocketChmodFailed = "SOCKET_CHMOD_FAILED";
inline constexpr absl::string_view kSocketChownFailed = "SOCKET_CHOWN_FAILED";
inline constexpr absl::string_view kListenFailed = "LISTEN_FAILED";
inline constexpr absl::string_view kMetricsListenFailed = "METRICS_LISTEN_FAILED";
inline constexpr absl::string_view kTlsRequired = "TLS_REQUIRED";
inline constexpr absl::string_view kTlsConflict = "TLS_CONFLICT";
inline constexpr absl::string_view kTcpOptionsWithoutListener = "TCP_OPTIONS_WITHOUT_LISTENER";
inline constexpr absl::string_view kInsecureTcpNotLoopback = "INSECURE_TCP_NOT_LOOPBACK";
inline constexpr absl::string_view kTlsFileUnreadable = "TLS_FILE_UNREADABLE";
inline constexpr absl::string_view kInvalidTlsFile = "INVALID_TLS_FILE";
inline constexpr absl::string_view kTlsStagingFailed = "TLS_STAGING_FAILED";

// --- Client side ---
// Raised by the client library, iommuctl and loadgen before anything is sent; never on the wire.
inline constexpr absl::string_view kConnectFailed = "CONNECT_FAILED";
inline constexpr absl::string_view kSocketPermissionDenied = "SOCKET_PERMISSION_DENIED";
inline constexpr absl::string_view kInvalidTarget = "INVALID_TARGET";
inline constexpr absl::string_view kInvalidTlsOptions = "INVALID_TLS_OPTIONS";
inline constexpr absl::string_view kInvalidArgument = "INVALID_ARGUMENT";
inline constexpr absl::string_view kUsage = "USAGE";
inline constexpr absl::string_view kInvalidNumber = "INVALID_NUMBER";
inline constexpr absl::string_view kInvalidLoad = "INVALID_LOAD";
inline constexpr absl::string_view kInvalidMix = "INVALID_MIX";

}  // namespace reason
}  // namespace iommud

#endif  // IOMMUD_CORE_ERROR_REASONS_H_
