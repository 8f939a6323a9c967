// Every user-visible string, per language. Vietnamese is the default.
export const STRINGS = {
  vi: {
    title: 'Phòng họp trực tuyến',
    room: 'Phòng',
    name: 'Tên của bạn',
    join: 'Tham gia',
    leave: 'Rời phòng',
    mic: 'Micro',
    camera: 'Camera',
    muteMic: 'Tắt micro',
    unmuteMic: 'Bật micro',
    cameraOff: 'Tắt camera',
    cameraOn: 'Bật camera',
    share: 'Chia sẻ màn hình',
    stopShare: 'Dừng chia sẻ',
    you: 'Bạn',
    screenOf: 'Màn hình của {name}',
    connecting: 'Đang kết nối…',
    connected: 'Đã kết nối',
    left: 'Bạn đã rời phòng.',
    rejoin: 'Tham gia lại',
    participants: '{n} người tham gia',
    micMuted: 'Micro đang tắt',
    micOffBadge: 'mic tắt',
    camOffBadge: 'cam tắt',
    camOff: 'Camera đang tắt',
    noMedia: 'Không truy cập được camera/micro: {err}',
    error_bad_message: 'Tin nhắn không hợp lệ.',
    error_unsupported_version: 'Phiên bản ứng dụng không tương thích với máy chủ.',
    error_not_joined: 'Chưa tham gia phòng.',
    error_already_joined: 'Đã tham gia phòng.',
    error_invalid_room: 'Tên phòng không hợp lệ (1–64 chữ, số, - _ .).',
    error_invalid_name: 'Tên không hợp lệ (1–64 ký tự).',
    error_invalid_offer: 'Máy chủ từ chối thông số kết nối.',
    error_message_too_large: 'Tin nhắn quá lớn.',
    error_room_full: 'Phòng đã đủ người.',
    error_server_busy: 'Máy chủ đang bận, vui lòng thử lại.',
    error_timeout: 'Mất kết nối với máy chủ.',
    error_media_failed: 'Mất kết nối âm thanh/hình ảnh.',
    error_internal: 'Lỗi máy chủ.',
    error_too_slow: 'Kết nối quá chậm, đã bị ngắt khỏi phòng.',
    disconnected: 'Mất kết nối với máy chủ.',
    error_shutting_down: 'Máy chủ đang khởi động lại.',
    restarting: 'Máy chủ đang khởi động lại, đang kết nối lại…',
    reconnecting: 'Mất kết nối, đang kết nối lại (lần {n})…',
    language: 'English',
  },
  en: {
    title: 'Online meeting room',
    room: 'Room',
    name: 'Your name',
    join: 'Join',
    leave: 'Leave',
    mic: 'Mic',
    camera: 'Camera',
    muteMic: 'Mute mic',
    unmuteMic: 'Unmute mic',
    cameraOff: 'Camera off',
    cameraOn: 'Camera on',
    share: 'Share screen',
    stopShare: 'Stop sharing',
    you: 'You',
    screenOf: "{name}'s screen",
    connecting: 'Connecting…',
    connected: 'Connected',
    left: 'You left the room.',
    rejoin: 'Join again',
    participants: '{n} participants',
    micMuted: 'Mic muted',
    micOffBadge: 'mic off',
    camOffBadge: 'cam off',
    camOff: 'Camera off',
    noMedia: 'Cannot access camera/microphone: {err}',
    error_bad_message: 'Invalid message.',
    error_unsupported_version: 'This app version is not compatible with the server.',
    error_not_joined: 'Not in a room yet.',
    error_already_joined: 'Already in a room.',
    error_invalid_room: 'Invalid room name (1–64 letters, digits, - _ .).',
    error_invalid_name: 'Invalid name (1–64 characters).',
    error_invalid_offer: 'The server rejected the connection parameters.',
    error_message_too_large: 'Message too large.',
    error_room_full: 'The room is full.',
    error_server_busy: 'The server is busy; please try again.',
    error_timeout: 'Lost the connection to the server.',
    error_media_failed: 'Lost the audio/video connection.',
    error_internal: 'Server error.',
    error_too_slow: 'The connection fell behind and was removed from the room.',
    disconnected: 'Lost the connection to the server.',
    error_shutting_down: 'The server is restarting.',
    restarting: 'Server restarting, reconnecting…',
    reconnecting: 'Connection lost, reconnecting (attempt {n})…',
    language: 'Tiếng Việt',
  },
};

let lang = 'vi';

export function setLang(l) {
  lang = STRINGS[l] ? l : 'vi';
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
}

export function getLang() {
  return lang;
}

export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.vi[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? '');
}
